// A replicated volume's create left without an answer from the store (fabric/cluster/lost-create.ts),
// settled on a real embedded store whose calls fail as a broken connection to etcd fails them: made
// if the store has its record; otherwise its copies left to their nodes to delete (those another
// volume of the name holds excepted), never a record put from there; ended when weftd stops.

import { StoreUnavailableError, type ClusterStore } from '../../fabric/cluster/cluster-store';
import { settleLostCreate } from '../../fabric/cluster/lost-create';
import { leftoverPrefix, volumeKey, type VolumeRecord } from '../../fabric/cluster/volume-record';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const current = freshEmbeddedStore();
let store: ClusterStore;
beforeEach(() => (store = current()));

const lost = () => new StoreUnavailableError('etcd did not answer: connection reset');
const RETRY_MS = 10;
const running = () => new AbortController().signal;

function recordOf(createId: string, replicas: string[], epoch = 0): VolumeRecord {
  return { name: 'v', sizeBytes: 1 << 20, class: 'ssd', replicas: replicas.map((node) => ({ node, state: 'in-sync' })), primary: replicas[0], epoch, createId };
}

/** The nodes told to delete their copy of v. */
async function leftovers(): Promise<string[]> {
  const found = await Promise.all(['n1', 'n2', 'n3'].map(async (node) => ((await store.list(leftoverPrefix(node))).length > 0 ? [node] : [])));
  return found.flat();
}

test('a lost send that committed: made, though its record changed since; nothing is left to delete', async () => {
  await store.put(volumeKey('v'), JSON.stringify(recordOf('mine', ['n1', 'n2'], 3)));
  await expect(settleLostCreate(store, recordOf('mine', ['n1', 'n2']), ['n1', 'n2'], RETRY_MS, running())).resolves.toBe('created');
  expect(JSON.parse((await store.get(volumeKey('v')))!.value)).toMatchObject({ createId: 'mine', epoch: 3 });
  expect(await leftovers()).toEqual([]);
});

test('a store that does not answer for a while is asked again; no record: the copies go, no record is put', async () => {
  let gets = 0;
  const flaky = withCalls(store, { get: (key) => (++gets <= 3 ? Promise.reject(lost()) : store.get(key)) });
  await expect(settleLostCreate(flaky, recordOf('mine', ['n1', 'n2']), ['n1', 'n2'], RETRY_MS, running())).resolves.toBe('not-created');
  expect(gets).toBe(4);
  expect(await store.get(volumeKey('v'))).toBeUndefined();
  expect(await leftovers()).toEqual(['n1', 'n2']);
});

test('the lost send commits between the look and the leftovers: found made at the next look, its copies kept', async () => {
  const record = recordOf('mine', ['n1', 'n2']);
  let gets = 0;
  const late = withCalls(store, {
    get: async (key) => {
      const seen = await store.get(key);
      if (++gets === 1) await store.put(volumeKey('v'), JSON.stringify(record)); // the lost send lands now
      return seen;
    },
  });
  await expect(settleLostCreate(late, record, ['n1', 'n2'], RETRY_MS, running())).resolves.toBe('created');
  expect(gets).toBe(2);
  expect(await leftovers()).toEqual([]);
});

test("the name is another volume's: the copies it does not name are left to their nodes, once the look and the write agree", async () => {
  await store.put(volumeKey('v'), JSON.stringify(recordOf('theirs', ['n2', 'n3'])));
  let txns = 0;
  const changing = withCalls(store, {
    txn: async (txn) => {
      // The other volume's record changes under the first attempt (its primary took over).
      if (++txns === 1) await store.put(volumeKey('v'), JSON.stringify(recordOf('theirs', ['n2', 'n3'], 1)));
      return store.txn(txn);
    },
  });
  await expect(settleLostCreate(changing, recordOf('mine', ['n1', 'n2']), ['n1', 'n2'], RETRY_MS, running())).resolves.toBe('not-created');
  expect(txns).toBe(2);
  expect(await leftovers()).toEqual(['n1']); // n2's copy is the other volume's now, not this create's
  expect(JSON.parse((await store.get(volumeKey('v')))!.value)).toMatchObject({ createId: 'theirs' });
});

test('a daemon that stops ends it, also while the store does not answer', async () => {
  const stopping = new AbortController();
  const silent = withCalls(store, { get: () => Promise.reject(lost()) });
  const settling = settleLostCreate(silent, recordOf('mine', ['n1']), ['n1'], RETRY_MS, stopping.signal);
  setTimeout(() => stopping.abort(new Error('weftd is stopping')), 50);
  await expect(settling).rejects.toThrow('weftd is stopping');
  expect(await leftovers()).toEqual([]);
});
