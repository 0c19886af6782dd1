// A delete of a replicated volume removes its record, then each copy. The node running it may die
// in between: the record goes with a leftover key for every copy (leftovers.ts), in the same
// transaction, so that each copy's node deletes it once it sees the key. Three weftd on a real
// etcd; the node running the delete (it holds no copy) killed with -9 as soon as the record is gone.

import { ChaosCluster } from '../chaos/cluster';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { leftoverKey, volumeKey, type VolumeRecord } from '../../fabric/cluster/volume-record';
import type { StoreWatch } from '../../fabric/cluster/cluster-store';
import type { VolumeInfo } from '../../fabric/volume/types';
import { NbdClient } from '../../fabric/nbd/client';
import { qemuIo, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

let cluster: ChaosCluster | undefined;
let store: EtcdStore | undefined;
let watch: StoreWatch | undefined;

afterAll(async () => {
  await watch?.close();
  await store?.close();
  await cluster?.close();
  await cleanupAll();
});

test('the node running a delete killed once the record is gone: each copy is deleted by its own node', async () => {
  cluster = await ChaosCluster.start(3);
  const [n1] = cluster.nodes;
  const holders = (await cluster.createOnN1('v', 16 * MiB, 2)).replication!.replicas.map((r) => cluster!.node(r.node));
  const runner = cluster.nodes.find((n) => !holders.includes(n))!;
  await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x11 0 1M', 'flush']);

  store = await EtcdStore.open(cluster.etcd.endpoints);
  let killed = false;
  watch = await store.watch('volumes/v', {}, (event) => {
    if (event.type !== 'delete' || killed) return;
    killed = true;
    void cluster!.kill9(runner); // before it has deleted the copies, which it does one at a time
  });
  await runner.weftd.weft(['volume', 'delete', 'v']); // its answer is lost with it, or comes first
  await waitFor(async () => killed, 5_000, 20);

  const stillThere = async () => {
    const lists = await Promise.all(holders.map((h) => weftJson<VolumeInfo[]>(h.weftd, ['volume', 'list'])));
    return lists.flat().filter((v) => v.name === 'v').length;
  };
  await waitFor(async () => (await stillThere()) === 0, 15_000, 200);
  // Each node deleted its key with its copy.
  await waitFor(async () => (await store!.list('leftovers/')).length === 0, 5_000, 100);
});

test("a delete's drop of a copy takes it only while its leftover key is there: a copy of the name made since stays", async () => {
  // Made on n2 by a create of the name again (its record comes once every copy is made), after the
  // delete's transaction but before the delete's node got to n2: the create took n2's key away.
  const n2 = cluster!.node('n2');
  await n2.api.createCopy('w', 16 * MiB, 'ssd');
  await n2.api.dropLeftover('w');
  expect((await weftJson<VolumeInfo[]>(n2.weftd, ['volume', 'list'])).map((v) => v.name)).toContain('w');
  // With its key (the delete's own), it goes.
  await store!.put(leftoverKey('n2', 'w'), JSON.stringify({ reason: 'test' }));
  await n2.api.dropLeftover('w');
  expect((await weftJson<VolumeInfo[]>(n2.weftd, ['volume', 'list'])).map((v) => v.name)).not.toContain('w');
  expect(await store!.get(leftoverKey('n2', 'w'))).toBeUndefined();
});

test('a replacement asked for after its volume was deleted (the primary resyncing it had not heard yet) makes no copy: nothing would ever delete it', async () => {
  const n2 = cluster!.node('n2');
  await expect(n2.api.createCopy('gone', 16 * MiB, 'ssd', undefined, undefined, true)).rejects.toThrow(/volume gone is no longer in the cluster/);
  expect((await weftJson<VolumeInfo[]>(n2.weftd, ['volume', 'list'])).map((v) => v.name)).not.toContain('gone');
});

test('a record that names a node without a copy (a replacement whose copy was never made): the delete goes through, and removes every copy', async () => {
  const c = cluster!;
  for (const n of c.nodes) if (!n.up) await c.restart(n); // the first test killed one
  const holders = (await c.createOnN1('x', 16 * MiB, 2)).replication!.replicas.map((r) => r.node);
  const spare = c.nodes.find((n) => !holders.includes(n.id))!;
  // As the primary writes a replacement into the record before asking its node for the copy.
  const kv = await store!.get(volumeKey('x'));
  const record = JSON.parse(kv!.value) as VolumeRecord;
  record.replicas.push({ ...record.replicas[record.replicas.length - 1], node: spare.id, state: 'failed' });
  await store!.put(volumeKey('x'), JSON.stringify(record));

  const deleted = await c.nodes[0].weftd.weft(['volume', 'delete', 'x']);
  expect(deleted.stderr).toBe('');
  expect(deleted.code).toBe(0);
  expect(await store!.get(volumeKey('x'))).toBeUndefined();
  // Each copy's node drops its copy.
  const copies = async () => (await Promise.all(holders.map((id) => weftJson<VolumeInfo[]>(c.node(id).weftd, ['volume', 'list'])))).flat().filter((v) => v.name === 'x');
  await waitFor(async () => (await copies()).length === 0, 10_000, 200);
});

test('a copy deleted while its node was down is never served as a volume of its own when that node starts again', async () => {
  const c = cluster!;
  for (const n of c.nodes) if (!n.up) await c.restart(n);
  const holders = (await c.createOnN1('y', 16 * MiB, 2)).replication!.replicas.map((r) => c.node(r.node));
  const away = holders.find((h) => h.id !== 'n1')!;
  await qemuIo(c.nodes[0].weftd.nbdUri('y'), ['write -P 0x22 0 64k', 'flush']);
  await c.kill9(away);
  // Refused while the cluster still counts the node up (its lease runs out first).
  await waitFor(async () => (await c.nodes[0].weftd.weft(['volume', 'delete', 'y'])).code === 0, 15_000, 500);
  expect(await store!.get(leftoverKey(away.id, 'y'))).toBeDefined();

  // A client on that node connects as soon as its NBD port does, before the node has dropped the copy.
  const starting = c.restart(away);
  let started = false;
  void starting.finally(() => (started = true));
  const seen: string[] = [];
  const giveUpAt = Date.now() + 30_000; // a port that only ever refuses fails the test, not the suite's timeout
  while ((!started || seen.length === 0) && Date.now() < giveUpAt) {
    try {
      const client = await NbdClient.connect({ host: '127.0.0.1', port: away.weftd.nbdPort, exportName: 'y', timeoutMs: 2000 });
      try {
        seen.push((await client.read(0, 4096)).toString('hex', 0, 4));
      } catch (err) {
        seen.push(`read refused: ${(err as Error).message}`);
      } finally {
        client.close();
      }
    } catch (err) {
      const message = (err as Error).message;
      if (!/ECONNREFUSED/.test(message)) seen.push(`open refused: ${message}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    if (started && seen.length > 0) break;
  }
  await starting;
  expect(seen.length).toBeGreaterThan(0);
  expect(seen.filter((s) => s.startsWith('22'))).toEqual([]);
  // And the copy goes: no client pinned it.
  const copies = async () => (await weftJson<VolumeInfo[]>(away.weftd, ['volume', 'list'])).filter((v) => v.name === 'y');
  await waitFor(async () => (await copies()).length === 0, 10_000, 200);
});
