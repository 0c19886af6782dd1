// A replicated volume's create written down before its copies are made (fabric/cluster/create-intent.ts),
// on a real embedded store: one under way is refused to others; one whose node is gone (its alive
// key lapsed, or is another life's), or that its own node no longer runs, is given up by the next,
// its marked and known-made copies left to their nodes (registered ones only); a create given up
// can neither mark a copy nor record its volume; a begin whose answer was lost is settled.

import { StoreUnavailableError, type ClusterStore } from '../../fabric/cluster/cluster-store';
import {
  BeginOutcomeUnknownError,
  beginCreate,
  createUnderWay,
  giveUpAbandonedCreates,
  giveUpCreate,
  markCopy,
  recordedIntent,
  unmarkCopy,
  type CreatingNode,
} from '../../fabric/cluster/create-intent';
import { createKey } from '../../fabric/cluster/create-key';
import { settleLostCreate } from '../../fabric/cluster/lost-create';
import { ALIVE, NODES } from '../../fabric/cluster/membership';
import { leftoverKey, leftoverPrefix, volumeKey } from '../../fabric/cluster/volume-record';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const current = freshEmbeddedStore();
let store: ClusterStore;
let told: [string, string, string[]][];
beforeEach(async () => {
  store = current();
  told = [];
  for (const node of ['n1', 'n2', 'n3']) await store.put(NODES + node, JSON.stringify({ id: node }));
});

const up = (node: string) => store.put(ALIVE + node, JSON.stringify({ instance: node }));

/** Node id as the intent functions see it, running the creates named. */
function node(id: string, ...running: string[]): CreatingNode {
  return { id, runs: (createId) => running.includes(createId), onGivenUp: (name, of, copies) => told.push([name, of, copies]) };
}

/** The nodes told to delete their copy of v. */
async function leftovers(): Promise<string[]> {
  const found = await Promise.all(['n1', 'n2', 'n3'].map(async (n) => ((await store.list(leftoverPrefix(n))).length > 0 ? [n] : [])));
  return found.flat();
}

test('a create under way on a node that is up is refused to another, naming that node; nothing changes', async () => {
  await up('n1');
  await up('n2');
  const first = await beginCreate(store, 'v', 'c1', node('n1', 'c1'));
  await markCopy(store, 'v', 'c1', 'n3');
  await expect(beginCreate(store, 'v', 'c2', node('n2'))).rejects.toMatchObject({ kind: 'ABORTED', message: expect.stringContaining('under way on node n1') });
  await expect(createUnderWay(store, 'v', node('n2'))).resolves.toBe('n1');
  // Its own node, while this process runs it: also under way.
  await expect(beginCreate(store, 'v', 'c3', node('n1', 'c1', 'c3'))).rejects.toMatchObject({ kind: 'ABORTED' });
  expect(await leftovers()).toEqual([]);
  // Still the first's: it marks and records.
  await markCopy(store, 'v', 'c1', 'n1');
  await expect(createKey(store, volumeKey('v'), '{"createId":"c1"}', () => false, { also: recordedIntent(first, ['n1', 'n3']) })).resolves.toBe(true);
  await expect(createUnderWay(store, 'v', node('n2'))).resolves.toBeUndefined();
  expect(await store.list('create-copies/')).toEqual([]);
  expect(told).toEqual([]);
});

test.each([
  ['died (its alive key lapsed)', (n: string) => store.delete(ALIVE + n), 'n2'],
  ['restarted (its alive key is a new one)', async (n: string) => (await store.delete(ALIVE + n), await up(n)), 'n2'],
  ['no longer runs it (its process gave up a settle, or a begin whose answer was lost)', async () => undefined, 'n1'],
])('a create whose node %s is given up by the next: its marked copies, only those, become leftovers; it can no longer mark or record', async (_, gone, next) => {
  await up('n1');
  await up('n2');
  const first = await beginCreate(store, 'v', 'c1', node('n1', 'c1'));
  await markCopy(store, 'v', 'c1', 'n1');
  await markCopy(store, 'v', 'c1', 'n2'); // n3 was to be asked next
  await gone('n1');
  await beginCreate(store, 'v', 'c2', node(next, 'c2'));
  expect(told).toEqual([['v', 'n1', ['n1', 'n2']]]);
  expect(await leftovers()).toEqual(['n1', 'n2']);
  // Named by the create given up: no record of the name (the next create's) takes them for its own.
  expect(JSON.parse((await store.get(leftoverKey('n1', 'v')))!.value)).toEqual({ reason: 'its create was cut short', createId: 'c1' });
  await expect(createUnderWay(store, 'v', node('n3'))).resolves.toBe(next);
  // The first, still running somewhere, is refused at each step.
  await expect(markCopy(store, 'v', 'c1', 'n3')).rejects.toMatchObject({ kind: 'ABORTED', message: expect.stringContaining('was given up') });
  await expect(createKey(store, volumeKey('v'), '{"createId":"c1"}', () => false, { also: recordedIntent(first, ['n1', 'n2']) })).resolves.toBe(false);
  expect(await store.get(volumeKey('v'))).toBeUndefined();
  await expect(giveUpCreate(store, first, ['n1', 'n2'])).resolves.toBeUndefined();
});

test('a copy marked while a give-up looks at the marks has the give-up look again: that copy too is left to its node', async () => {
  await up('n1');
  const intent = await beginCreate(store, 'v', 'c1', node('n1', 'c1'));
  await markCopy(store, 'v', 'c1', 'n1');
  let lists = 0;
  const racing = withCalls(store, {
    list: async (prefix) => {
      const seen = await store.list(prefix);
      if (prefix.startsWith('create-copies/') && ++lists === 1) await markCopy(store, 'v', 'c1', 'n2'); // n2's answer lands now
      return seen;
    },
  });
  await expect(giveUpCreate(racing, intent, [])).resolves.toEqual(['n1', 'n2']);
  expect(lists).toBe(2);
  expect(await leftovers()).toEqual(['n1', 'n2']);
  expect(await store.list('create-copies/')).toEqual([]);
});

test('the copies it knows were made count, marked or not (a node of an older version marks nothing); a node forgotten gets no leftover', async () => {
  await up('n1');
  const intent = await beginCreate(store, 'v', 'c1', node('n1', 'c1'));
  await markCopy(store, 'v', 'c1', 'n1');
  await markCopy(store, 'v', 'c1', 'n2');
  await unmarkCopy(store, 'v', 'c1', 'n2'); // n2 could not make its copy after all
  await markCopy(store, 'v', 'c1', 'n4'); // forgotten since (weft node forget): nothing would delete its key
  await expect(giveUpCreate(store, intent, ['n1', 'n3'])).resolves.toEqual(['n1', 'n3']);
  expect(await leftovers()).toEqual(['n1', 'n3']);
  expect(await store.list(leftoverPrefix('n4'))).toEqual([]);
  expect(await store.list('create-copies/')).toEqual([]);
  await expect(createUnderWay(store, 'v', node('n2'))).resolves.toBeUndefined();
});

test('at a join, only the creates that are not under way are given up', async () => {
  await up('n1');
  await up('n2');
  await beginCreate(store, 'a', 'c1', node('n1', 'c1'));
  await markCopy(store, 'a', 'c1', 'n3');
  await beginCreate(store, 'b', 'c2', node('n2', 'c2'));
  await markCopy(store, 'b', 'c2', 'n3');
  await store.delete(ALIVE + 'n1');
  await giveUpAbandonedCreates(store, node('n3'));
  expect(told).toEqual([['a', 'n1', ['n3']]]);
  expect((await store.list(leftoverPrefix('n3'))).map((kv) => kv.key)).toEqual([leftoverKey('n3', 'a')]);
  await expect(createUnderWay(store, 'b', node('n3'))).resolves.toBe('n2');
});

test("a begin whose answer was lost (it committed): the error carries the intent, and settling it gives it up", async () => {
  await up('n1');
  let sent = 0;
  const lost = withCalls(store, {
    txn: async (txn) => {
      const result = await store.txn(txn);
      if (++sent === 1) throw new StoreUnavailableError('etcd did not answer: deadline exceeded');
      return result;
    },
  });
  const error = (await beginCreate(lost, 'v', 'c1', node('n1', 'c1')).catch((err: unknown) => err)) as BeginOutcomeUnknownError;
  expect(error).toBeInstanceOf(BeginOutcomeUnknownError);
  expect(error.kind).toBe('UNAVAILABLE');
  await expect(createUnderWay(store, 'v', node('n2'))).resolves.toBe('n1'); // written after all
  await expect(settleLostCreate(store, error.intent, [], 10, new AbortController().signal)).resolves.toBe('not-created');
  await expect(createUnderWay(store, 'v', node('n2'))).resolves.toBeUndefined();
});

test('a node out of the cluster (no alive key) begins no create', async () => {
  await expect(beginCreate(store, 'v', 'c1', node('n1', 'c1'))).rejects.toMatchObject({ kind: 'UNAVAILABLE', message: expect.stringContaining('not in the cluster') });
  await expect(createUnderWay(store, 'v', node('n1'))).resolves.toBeUndefined();
});
