// What every ClusterStore must do, as its callers (membership, placement, failover) rely on it:
// one suite, run against the embedded store and a real etcd.

import type { ClusterStore, StoreLease, WatchEvent } from '../../fabric/cluster/cluster-store';
import { waitFor } from '../helpers/wait-for';

/** TTL of the leases under test: etcd's minimum is 1 s with the test cluster's election timeout. */
const TTL_SECONDS = 2;

/** Blocks this process (timers, sockets, everything) as a long GC pause or a stopped VM would. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

/** Collects a watch's events. */
function recorder(): { events: WatchEvent[]; onEvent: (event: WatchEvent) => void } {
  const events: WatchEvent[] = [];
  return { events, onEvent: (event) => events.push(event) };
}

/** `open` gives a store for one test, closed after it. */
export function describeClusterStore(name: string, open: () => Promise<ClusterStore>): void {
  describe(`${name} cluster store`, () => {
    let store: ClusterStore;
    let prefix: string;
    let testNumber = 0;

    beforeEach(async () => {
      store = await open();
      // Every test has its own keys, so that tests against one etcd do not see each other.
      prefix = `t${++testNumber}-${Date.now()}/`;
    });
    afterEach(() => store.close());

    const key = (name: string) => prefix + name;

    it('puts, gets, lists in key order and deletes', async () => {
      const first = await store.put(key('b'), 'one');
      await store.put(key('a'), 'x');
      await store.put(key('c/d'), 'y');
      await store.put(`${prefix.slice(0, -1)}-other`, 'not under the prefix');
      const second = await store.put(key('b'), 'two');
      expect(second).toBeGreaterThan(first);

      expect(await store.get(key('b'))).toEqual({ key: key('b'), value: 'two', createRevision: first, modRevision: second, version: 2 });
      expect(await store.get(key('missing'))).toBeUndefined();
      expect((await store.list(prefix)).map((entry) => [entry.key, entry.value])).toEqual([[key('a'), 'x'], [key('b'), 'two'], [key('c/d'), 'y']]);

      expect(await store.delete(key('a'))).toBe(true);
      expect(await store.delete(key('a'))).toBe(false);
      expect(await store.get(key('a'))).toBeUndefined();
      expect(await store.deletePrefix(prefix)).toBe(2);
      expect(await store.list(prefix)).toEqual([]);
    });

    it('moves its revision with every change, and tells the revision of each', async () => {
      const before = await store.revision();
      const put = await store.put(key('a'), '1');
      expect(put).toBeGreaterThan(before);
      expect(await store.revision()).toBe(put);
      await store.delete(key('a'));
      expect(await store.revision()).toBeGreaterThan(put);
    });

    it('reads a key with the revision its answer is of, an absent key too', async () => {
      const put = await store.put(key('a'), '1');
      await store.put(key('b'), '2');
      const deleted = await store.delete(key('b')).then(() => store.revision());
      expect(await store.read(key('a'))).toEqual({ kv: expect.objectContaining({ value: '1', modRevision: put }), revision: deleted });
      expect(await store.read(key('b'))).toEqual({ kv: undefined, revision: deleted });
    });

    it('applies a transaction only when every compare holds, at one revision', async () => {
      const created = await store.put(key('epoch'), '1');
      const won = await store.txn({
        compare: [
          { key: key('epoch'), target: 'value', op: '=', value: '1' },
          { key: key('epoch'), target: 'modRevision', op: '=', value: created },
          { key: key('primary'), target: 'createRevision', op: '=', value: 0 },
        ],
        success: [{ type: 'put', key: key('epoch'), value: '2' }, { type: 'put', key: key('primary'), value: 'node-a' }],
        failure: [{ type: 'put', key: key('lost'), value: 'yes' }],
      });
      expect(won.succeeded).toBe(true);
      const epoch = await store.get(key('epoch'));
      const primary = await store.get(key('primary'));
      expect([epoch?.value, primary?.value]).toEqual(['2', 'node-a']);
      expect(epoch?.modRevision).toBe(won.revision);
      expect(primary?.modRevision).toBe(won.revision);
      expect(await store.get(key('lost'))).toBeUndefined();

      // The same compares again: the epoch moved on, so only the failure branch applies.
      const lost = await store.txn({
        compare: [{ key: key('epoch'), target: 'modRevision', op: '=', value: created }],
        success: [{ type: 'delete', key: key('primary') }],
        failure: [{ type: 'put', key: key('lost'), value: 'yes' }],
      });
      expect(lost.succeeded).toBe(false);
      expect((await store.get(key('primary')))?.value).toBe('node-a');
      expect((await store.get(key('lost')))?.value).toBe('yes');

      // An absent key has version 0, and no value to compare.
      const absent = await store.txn({ compare: [{ key: key('none'), target: 'version', op: '<', value: 1 }], success: [] });
      expect(absent.succeeded).toBe(true);
      const valueOfAbsent = await store.txn({ compare: [{ key: key('none'), target: 'value', op: '!=', value: 'x' }], success: [] });
      expect(valueOfAbsent.succeeded).toBe(false);
    });

    it('lets exactly one of concurrent compare-and-swaps win', async () => {
      const names = Array.from({ length: 8 }, (_, index) => `node-${index}`);
      const results = await Promise.all(
        names.map((name) => store.txn({ compare: [{ key: key('lock'), target: 'createRevision', op: '=', value: 0 }], success: [{ type: 'put', key: key('lock'), value: name }] })),
      );
      const winners = names.filter((_, index) => results[index].succeeded);
      expect(winners).toHaveLength(1);
      expect((await store.get(key('lock')))?.value).toBe(winners[0]);
    });

    it('refuses a transaction that changes one key twice, and changes nothing', async () => {
      const txn = store.txn({ compare: [], success: [{ type: 'put', key: key('a'), value: '1' }, { type: 'delete', key: key('a') }] });
      await expect(txn).rejects.toThrow(/twice/);
      expect(await store.get(key('a'))).toBeUndefined();
    });

    it('keeps a lease alive while the holder runs, and deletes its keys when revoked', async () => {
      const lease = await store.grantLease(TTL_SECONDS);
      let lost: Error | undefined;
      lease.onLost((error) => (lost = error));
      await store.put(key('node'), 'up', { lease: lease.id });
      await store.put(key('kept'), 'no lease');
      expect((await store.get(key('node')))?.lease).toBe(lease.id);
      await new Promise((resolve) => setTimeout(resolve, (TTL_SECONDS + 1) * 1000));
      expect((await store.get(key('node')))?.value).toBe('up');

      const watch = recorder();
      const handle = await store.watch(prefix, {}, watch.onEvent);
      await lease.revoke();
      expect(await store.get(key('node'))).toBeUndefined();
      expect((await store.get(key('kept')))?.value).toBe('no lease');
      await waitFor(() => watch.events.length === 1);
      expect(watch.events[0]).toMatchObject({ type: 'delete', key: key('node') });
      await handle.close();
      expect(lost).toBeUndefined();
      await expect(store.put(key('late'), 'x', { lease: lease.id })).rejects.toThrow(/lease .* not found/);
    });

    it('tells the holder it lost a lease it could not keep alive, and deletes its keys', async () => {
      const lease: StoreLease = await store.grantLease(TTL_SECONDS);
      const lost: Error[] = [];
      lease.onLost((error) => lost.push(error));
      await store.put(key('primary'), 'me', { lease: lease.id });
      stall(TTL_SECONDS * 1000 + 1500);
      await waitFor(() => lost.length > 0, 10_000);
      await waitFor(async () => (await store.get(key('primary'))) === undefined, 10_000, 100);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(lost).toHaveLength(1);
    });

    it('streams changes under a prefix in order, and replays them from a revision', async () => {
      const live = recorder();
      const handle = await store.watch(prefix, {}, live.onEvent);
      const first = await store.put(key('a'), '1');
      await store.put(`${prefix.slice(0, -1)}-other`, 'not watched');
      await store.put(key('b'), '2');
      await store.delete(key('a'));
      await store.txn({ compare: [], success: [{ type: 'put', key: key('c'), value: '3' }, { type: 'put', key: key('b'), value: '4' }] });
      const expected = [
        { type: 'put', key: key('a'), value: '1' },
        { type: 'put', key: key('b'), value: '2' },
        { type: 'delete', key: key('a') },
        { type: 'put', key: key('c'), value: '3' },
        { type: 'put', key: key('b'), value: '4' },
      ];
      await waitFor(() => live.events.length === expected.length);
      expect(live.events.map(({ type, key, value }) => ({ type, key, ...(value === undefined ? {} : { value }) }))).toEqual(expected);
      const revisions = live.events.map((event) => event.modRevision);
      expect(revisions[0]).toBe(first);
      expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
      expect(revisions[3]).toBe(revisions[4]);
      await handle.close();

      const replay = recorder();
      const replaying = await store.watch(prefix, { fromRevision: first }, replay.onEvent);
      await store.put(key('d'), '5');
      await waitFor(() => replay.events.length === expected.length + 1);
      expect(replay.events.slice(0, -1)).toEqual(live.events);
      expect(replay.events.at(-1)).toMatchObject({ type: 'put', key: key('d'), value: '5' });
      await replaying.close();
      await store.put(key('e'), 'after close');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(replay.events).toHaveLength(expected.length + 1);
    });
  });
}
