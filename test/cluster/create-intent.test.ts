// A replicated volume's create written down before its copies are made (fabric/cluster/create-intent.ts),
// on a real embedded store: one under way is refused to others; one whose node is gone (its alive
// key lapsed, or is another life's) is given up by the next, its marked copies, and only those,
// left to their nodes; a create given up can neither mark a copy nor record its volume.

import type { ClusterStore } from '../../fabric/cluster/cluster-store';
import { beginCreate, createUnderWay, giveUpAbandonedCreates, giveUpCreate, markCopy, recordedIntent, unmarkCopy } from '../../fabric/cluster/create-intent';
import { createKey } from '../../fabric/cluster/create-key';
import { ALIVE } from '../../fabric/cluster/membership';
import { leftoverKey, leftoverPrefix, volumeKey } from '../../fabric/cluster/volume-record';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const current = freshEmbeddedStore();
let store: ClusterStore;
beforeEach(() => (store = current()));

const up = (node: string) => store.put(ALIVE + node, JSON.stringify({ instance: node }));
const nothingGivenUp = () => {
  throw new Error('nothing was to be given up');
};

/** The nodes told to delete their copy of v. */
async function leftovers(): Promise<string[]> {
  const found = await Promise.all(['n1', 'n2', 'n3'].map(async (node) => ((await store.list(leftoverPrefix(node))).length > 0 ? [node] : [])));
  return found.flat();
}

test('a create under way on a node that is up is refused to another, naming that node; nothing changes', async () => {
  await up('n1');
  await up('n2');
  const first = await beginCreate(store, 'v', 'c1', 'n1', nothingGivenUp);
  await markCopy(store, 'v', 'c1', 'n3');
  await expect(beginCreate(store, 'v', 'c2', 'n2', nothingGivenUp)).rejects.toMatchObject({ kind: 'ABORTED', message: expect.stringContaining('under way on node n1') });
  expect(await createUnderWay(store, 'v')).toBe('n1');
  expect(await leftovers()).toEqual([]);
  // Still the first's: it marks and records.
  await markCopy(store, 'v', 'c1', 'n1');
  await expect(createKey(store, volumeKey('v'), '{"createId":"c1"}', () => false, { also: recordedIntent(first, ['n1', 'n3']) })).resolves.toBe(true);
  expect(await createUnderWay(store, 'v')).toBeUndefined();
  expect(await store.list('create-copies/')).toEqual([]);
});

test.each([
  ['died (its alive key lapsed)', (node: string) => store.delete(ALIVE + node)],
  ['restarted (its alive key is a new one)', async (node: string) => (await store.delete(ALIVE + node), await up(node))],
])('a create whose node %s is given up by the next: its marked copies, only those, become leftovers; it can no longer mark or record', async (_, gone) => {
  await up('n1');
  await up('n2');
  const first = await beginCreate(store, 'v', 'c1', 'n1', nothingGivenUp);
  await markCopy(store, 'v', 'c1', 'n1');
  await markCopy(store, 'v', 'c1', 'n2'); // n3 was to be asked next
  await gone('n1');
  const told: [string, string[]][] = [];
  await beginCreate(store, 'v', 'c2', 'n2', (node, copies) => told.push([node, copies]));
  expect(told).toEqual([['n1', ['n1', 'n2']]]);
  expect(await leftovers()).toEqual(['n1', 'n2']);
  expect(JSON.parse((await store.get(leftoverKey('n1', 'v')))!.value)).toEqual({ reason: 'its create was cut short' });
  expect(await createUnderWay(store, 'v')).toBe('n2');
  // The first, still running somewhere, is refused at each step.
  await expect(markCopy(store, 'v', 'c1', 'n3')).rejects.toMatchObject({ kind: 'ABORTED', message: expect.stringContaining('was given up') });
  await expect(createKey(store, volumeKey('v'), '{"createId":"c1"}', () => false, { also: recordedIntent(first, ['n1', 'n2']) })).resolves.toBe(false);
  expect(await store.get(volumeKey('v'))).toBeUndefined();
  await expect(giveUpCreate(store, first)).resolves.toBeUndefined();
  expect(await createUnderWay(store, 'v')).toBe('n2');
});

test("a copy marked while a give-up looks at the marks has the give-up look again: that copy too is left to its node", async () => {
  await up('n1');
  const intent = await beginCreate(store, 'v', 'c1', 'n1', nothingGivenUp);
  await markCopy(store, 'v', 'c1', 'n1');
  let lists = 0;
  const racing = withCalls(store, {
    list: async (prefix) => {
      const seen = await store.list(prefix);
      if (++lists === 1) await markCopy(store, 'v', 'c1', 'n2'); // n2's answer lands now
      return seen;
    },
  });
  await expect(giveUpCreate(racing, intent)).resolves.toEqual(['n1', 'n2']);
  expect(lists).toBe(2);
  expect(await leftovers()).toEqual(['n1', 'n2']);
  expect(await store.list('create-copies/')).toEqual([]);
});

test('a copy that could not be made is unmarked: giving the create up then leaves nothing on its node', async () => {
  await up('n1');
  const intent = await beginCreate(store, 'v', 'c1', 'n1', nothingGivenUp);
  await markCopy(store, 'v', 'c1', 'n1');
  await markCopy(store, 'v', 'c1', 'n2');
  await unmarkCopy(store, 'v', 'c1', 'n2');
  await expect(giveUpCreate(store, intent)).resolves.toEqual(['n1']);
  expect(await createUnderWay(store, 'v')).toBeUndefined();
});

test('at a join, only the creates whose node is gone are given up', async () => {
  await up('n1');
  await up('n2');
  await beginCreate(store, 'a', 'c1', 'n1', nothingGivenUp);
  await markCopy(store, 'a', 'c1', 'n3');
  await beginCreate(store, 'b', 'c2', 'n2', nothingGivenUp);
  await markCopy(store, 'b', 'c2', 'n3');
  await store.delete(ALIVE + 'n1');
  await expect(giveUpAbandonedCreates(store)).resolves.toEqual([{ name: 'a', node: 'n1', copies: ['n3'] }]);
  expect((await store.list(leftoverPrefix('n3'))).map((kv) => kv.key)).toEqual([leftoverKey('n3', 'a')]);
  expect(await createUnderWay(store, 'a')).toBeUndefined();
  expect(await createUnderWay(store, 'b')).toBe('n2');
});

test('a node out of the cluster (no alive key) begins no create', async () => {
  await expect(beginCreate(store, 'v', 'c1', 'n1', nothingGivenUp)).rejects.toMatchObject({ kind: 'UNAVAILABLE', message: expect.stringContaining('not in the cluster') });
  expect(await createUnderWay(store, 'v')).toBeUndefined();
});
