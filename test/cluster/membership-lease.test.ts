// Membership's lease when the store fails to answer a registration it may have committed: the lease
// is given up, so that the next try (a restart, or a rejoin after a lost lease) finds the node's id
// free, not "already up" for ever on a lease kept alive by nobody's registration.

import pino from 'pino';
import { StoreUnavailableError, type Txn } from '../../fabric/cluster/cluster-store';
import { listNodes, Membership } from '../../fabric/cluster/membership';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const store = freshEmbeddedStore();
const logger = pino({ level: 'silent' });
const describeNode = () => ({ id: 'n1', address: '127.0.0.1', nbdPort: 10809, apiPort: 7070, version: 'test', pools: [], volumes: 0 });

test('a registration committed but not answered gives its lease up: the next join finds the id free', async () => {
  let answers = 0;
  const losesFirstAnswer = withCalls(store(), {
    txn: async (request: Txn) => {
      const response = await store().txn(request);
      if (answers++ === 0) throw new StoreUnavailableError('the answer was lost on the way');
      return response;
    },
  });
  await expect(Membership.join(losesFirstAnswer, describeNode, logger)).rejects.toThrow(/answer was lost/);
  // Refused as "already up" (after waiting out one lease) if the first lease were still kept alive.
  const membership = await Membership.join(store(), describeNode, logger);
  expect((await listNodes(store())).map((n) => [n.id, n.state])).toEqual([['n1', 'up']]);
  await membership.leave();
});
