// A replicated volume's create left without an answer from the store (fabric/cluster/lost-create.ts),
// settled on a real embedded store whose calls fail as a broken connection to etcd fails them: made
// if the record's transaction took its intent; otherwise given up, its marked copies left to their
// nodes to delete, never a record put from there; ended when weftd stops.

import { StoreUnavailableError, type ClusterStore } from '../../fabric/cluster/cluster-store';
import { beginCreate, markCopy, recordedIntent, type HeldIntent } from '../../fabric/cluster/create-intent';
import { settleLostCreate } from '../../fabric/cluster/lost-create';
import { ALIVE, NODES } from '../../fabric/cluster/membership';
import { leftoverPrefix, volumeKey, type VolumeRecord } from '../../fabric/cluster/volume-record';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const current = freshEmbeddedStore();
let store: ClusterStore;
beforeEach(async () => {
  store = current();
  for (const node of ['n1', 'n2', 'n3']) await store.put(NODES + node, JSON.stringify({ id: node }));
});

/** Node id, running the creates named. */
const node = (id: string, ...running: string[]) => ({ id, runs: (createId: string) => running.includes(createId), onGivenUp: () => undefined });

const lost = () => new StoreUnavailableError('etcd did not answer: connection reset');
const RETRY_MS = 10;
const running = () => new AbortController().signal;

function recordOf(createId: string, replicas: string[], epoch = 0): VolumeRecord {
  return { name: 'v', sizeBytes: 1 << 20, class: 'ssd', replicas: replicas.map((node) => ({ node, state: 'in-sync' })), primary: replicas[0], epoch, createId };
}

/** A create of v by n1, with copies marked on `marked`. */
async function begun(createId: string, marked: string[]): Promise<HeldIntent> {
  await store.put(ALIVE + 'n1', '{}');
  const intent = await beginCreate(store, 'v', createId, node('n1', createId));
  for (const node of marked) await markCopy(store, 'v', createId, node);
  return intent;
}

/** The record's transaction, as the create sends it. */
async function recorded(intent: HeldIntent, nodes: string[]): Promise<void> {
  const also = recordedIntent(intent, nodes);
  const { succeeded } = await store.txn({ compare: also.compare, success: [{ type: 'put', key: volumeKey('v'), value: JSON.stringify(recordOf(intent.createId, nodes)) }, ...also.success] });
  expect(succeeded).toBe(true);
}

/** The nodes told to delete their copy of v. */
async function leftovers(): Promise<string[]> {
  const found = await Promise.all(['n1', 'n2', 'n3'].map(async (node) => ((await store.list(leftoverPrefix(node))).length > 0 ? [node] : [])));
  return found.flat();
}

test('a lost send that committed: made, though its record changed since; nothing is left to delete', async () => {
  const intent = await begun('mine', ['n1', 'n2']);
  await recorded(intent, ['n1', 'n2']);
  await store.put(volumeKey('v'), JSON.stringify(recordOf('mine', ['n1', 'n2'], 3)));
  await expect(settleLostCreate(store, intent, [], RETRY_MS, running())).resolves.toBe('created');
  expect(JSON.parse((await store.get(volumeKey('v')))!.value)).toMatchObject({ createId: 'mine', epoch: 3 });
  expect(await leftovers()).toEqual([]);
  expect(await store.list('create-copies/')).toEqual([]);
});

test('a store that does not answer for a while is asked again; no record: the marked copies go, no record is put', async () => {
  const intent = await begun('mine', ['n1', 'n2']);
  let gets = 0;
  const flaky = withCalls(store, { get: (key) => (++gets <= 3 ? Promise.reject(lost()) : store.get(key)) });
  await expect(settleLostCreate(flaky, intent, [], RETRY_MS, running())).resolves.toBe('not-created');
  expect(gets).toBe(4);
  expect(await store.get(volumeKey('v'))).toBeUndefined();
  expect(await leftovers()).toEqual(['n1', 'n2']);
  expect(await store.list('creates/')).toEqual([]);
});

test('the lost send commits while the create is being given up: found made, its copies kept', async () => {
  const intent = await begun('mine', ['n1', 'n2']);
  let lists = 0;
  const late = withCalls(store, {
    list: async (prefix) => {
      const seen = await store.list(prefix);
      if (++lists === 1) await recorded(intent, ['n1', 'n2']); // the lost send lands now
      return seen;
    },
  });
  await expect(settleLostCreate(late, intent, [], RETRY_MS, running())).resolves.toBe('created');
  expect(await leftovers()).toEqual([]);
  expect(JSON.parse((await store.get(volumeKey('v')))!.value)).toMatchObject({ createId: 'mine' });
});

test('given up by another node meanwhile, which made a volume of the name since: not made, and that volume untouched', async () => {
  const intent = await begun('mine', ['n1']);
  await store.delete(ALIVE + 'n1'); // n1 lost its lease: n3 gives its create up and makes its own
  await store.put(ALIVE + 'n3', '{}');
  const theirs = await beginCreate(store, 'v', 'theirs', node('n3', 'theirs'));
  expect(await leftovers()).toEqual(['n1']);
  await markCopy(store, 'v', 'theirs', 'n2');
  await markCopy(store, 'v', 'theirs', 'n3');
  await recorded(theirs, ['n2', 'n3']);
  await expect(settleLostCreate(store, intent, [], RETRY_MS, running())).resolves.toBe('not-created');
  expect(await leftovers()).toEqual(['n1']);
  expect(JSON.parse((await store.get(volumeKey('v')))!.value)).toMatchObject({ createId: 'theirs' });
});

test('a daemon that stops ends it, also while the store does not answer', async () => {
  const intent = await begun('mine', ['n1']);
  const stopping = new AbortController();
  const silent = withCalls(store, { get: () => Promise.reject(lost()) });
  const settling = settleLostCreate(silent, intent, [], RETRY_MS, stopping.signal);
  setTimeout(() => stopping.abort(new Error('weftd is stopping')), 50);
  await expect(settling).rejects.toThrow('weftd is stopping');
  expect(await leftovers()).toEqual([]);
});
