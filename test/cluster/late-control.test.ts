// A control operation that reaches a copy after its primary gave up on it (no answer in time) and
// settled it there is refused, and changes nothing (control-ledger.ts): through the node-to-node API
// of a real weftd holding a copy, as a primary's late call would come.

import { status } from '@grpc/grpc-js';
import { allInSync } from '../chaos/cluster';
import { ownCluster } from '../helpers/shared-cluster';

jest.setTimeout(120_000);

const startCluster = ownCluster();

test('a snapshot settled by its primary before it came is refused by the copy, and made nowhere', async () => {
  const cluster = await startCluster(2, 'v');
  const record = await cluster.waitForVolume('v', allInSync, 60_000, 'in sync');
  const { primary, epoch } = record.replication!;
  const copy = cluster.nodes.find((n) => n.id !== primary)!;

  await copy.api.settleCopyControls('v', ['gone.1']);
  const late = await copy.api.controlCopy('v', { type: 'snapshot', name: 'late', id: 'gone.1' }, epoch).catch((err: unknown) => err);
  expect(late).toMatchObject({ code: status.FAILED_PRECONDITION, message: expect.stringMatching(/control operation gone\.1 came after its primary had given up on it: not run/) });
  expect(await copy.api.copySnapshots('v')).toEqual([]);

  // The volume's own snapshots go on as before.
  expect(await cluster.node(primary).weftd.weft(['snapshot', 'create', 'v', 's'])).toMatchObject({ code: 0 });
  expect((await copy.api.copySnapshots('v')).map((s) => s.name)).toEqual(['s']);
});
