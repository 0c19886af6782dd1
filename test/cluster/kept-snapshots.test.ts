// Snapshots outlive their volume in the cluster too. Once a replicated volume is deleted, its
// snapshots are listed, cloned and deleted through any node, also one that never held a copy: the
// store names the nodes that keep them (kept-snapshots.ts). The name stays taken until the last of
// them is deleted. A snapshot deleted while a node that keeps it is down is deleted by that node
// when it starts; a node that will not come back is forgotten (weft node forget) and keeps nothing
// taken. Also the refusals of snapshot delete and revert while a live volume is in use. Three real
// weftd on a real etcd.

import { ChaosCluster, type ChaosNode } from '../chaos/cluster';
import { NbdClient } from '../../fabric/nbd/client';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { keptSnapshots } from '../../fabric/cluster/kept-snapshots';
import type { SnapshotInfo, VolumeInfo } from '../../fabric/volume/types';
import { qemuIo, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

let cluster: ChaosCluster;
let store: EtcdStore;

beforeAll(async () => {
  cluster = await ChaosCluster.start(3);
  store = await EtcdStore.open(cluster.etcd.endpoints);
});

afterAll(async () => {
  await store?.close();
  await cluster?.close();
  await cleanupAll();
});

const names = (snapshots: SnapshotInfo[]) => snapshots.map((s) => s.name).sort();

/** A volume of two copies (primary n1) with snapshots s1 (0x11 at 0) and s2 (0x22 at 0), deleted; its copies' nodes and the third. */
async function deletedWithSnapshots(volume: string): Promise<{ holders: ChaosNode[]; outsider: ChaosNode }> {
  const shown = await cluster.createOnN1(volume, 16 * MiB, 2);
  const holders = shown.replication!.replicas.map((r) => cluster.node(r.node));
  const outsider = cluster.nodes.find((n) => !holders.includes(n))!;
  const uri = outsider.weftd.nbdUri(volume);
  await qemuIo(uri, ['write -P 0x11 0 1M', 'flush']);
  expect((await outsider.weftd.weft(['snapshot', 'create', volume, 's1'])).code).toBe(0);
  await qemuIo(uri, ['write -P 0x22 0 1M', 'flush']);
  expect((await outsider.weftd.weft(['snapshot', 'create', volume, 's2'])).code).toBe(0);
  const deleted = await outsider.weftd.weft(['volume', 'delete', volume]);
  expect(deleted.stderr).toBe('');
  expect(deleted.stdout).toContain(`deleted volume "${volume}"; its snapshots stay: ${volume}@s1, ${volume}@s2`);
  return { holders, outsider };
}

test('listed, cloned and deleted through a node that never held a copy; the name is free once the last is gone', async () => {
  const { holders, outsider } = await deletedWithSnapshots('v');
  expect((await keptSnapshots(store, 'v'))?.nodes.sort()).toEqual(holders.map((h) => h.id).sort());
  for (const via of cluster.nodes) {
    expect(names(await weftJson<SnapshotInfo[]>(via.weftd, ['snapshot', 'list', 'v']))).toEqual(['s1', 's2']);
    expect(names((await weftJson<SnapshotInfo[]>(via.weftd, ['snapshot', 'list'])).filter((s) => s.volume === 'v'))).toEqual(['s1', 's2']);
  }

  const again = await outsider.weftd.weft(['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2']);
  expect(again.code).not.toBe(0);
  expect(again.stderr).toMatch(/snapshots of an earlier volume named v are kept on n\d, n\d: delete them \(weft snapshot list v\) or choose another name/);
  for (const node of cluster.nodes) expect((await node.api.listVolumes()).map((v) => v.name)).not.toContain('v');

  const clone = await weftJson<VolumeInfo>(outsider.weftd, ['volume', 'create', 'c', '--from-snapshot', 'v@s1', '--replicas', '2']);
  expect(clone.replication!.replicas.map((r) => r.node).sort()).toEqual(holders.map((h) => h.id).sort());
  await qemuIo(outsider.weftd.nbdUri('c'), ['read -P 0x11 0 1M'], true);
  expect((await outsider.weftd.weft(['volume', 'delete', 'c'])).code).toBe(0);

  expect((await outsider.weftd.weft(['snapshot', 'delete', 'v@s1'])).stderr).toBe('');
  for (const holder of holders) expect(names(await holder.api.copySnapshots('v'))).toEqual(['s2']);
  const missing = await outsider.weftd.weft(['snapshot', 'delete', 'v@s1']);
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toMatch(/snapshot v@s1 does not exist/);

  expect((await outsider.weftd.weft(['snapshot', 'delete', 'v@s2'])).code).toBe(0);
  for (const holder of holders) expect(await holder.api.copySnapshots('v')).toEqual([]);
  expect(await keptSnapshots(store, 'v')).toBeUndefined();
  await weftJson<VolumeInfo>(outsider.weftd, ['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2']);
  expect(await weftJson<SnapshotInfo[]>(outsider.weftd, ['snapshot', 'list', 'v'])).toEqual([]);
  expect((await outsider.weftd.weft(['volume', 'delete', 'v'])).code).toBe(0);
  expect(await keptSnapshots(store, 'v')).toBeUndefined();
});

test('deleted while a node that keeps them is down: that node deletes them when it starts, and the name is free', async () => {
  const { holders, outsider } = await deletedWithSnapshots('w');
  const [up, down] = holders;
  await cluster.kill9(down);

  expect((await outsider.weftd.weft(['snapshot', 'delete', 'w@s1'])).code).toBe(0);
  // Again (a CO retrying): done already, as far as the nodes that are up and the store can say.
  expect((await outsider.weftd.weft(['snapshot', 'delete', 'w@s1'])).code).toBe(0);
  expect(names(await weftJson<SnapshotInfo[]>(outsider.weftd, ['snapshot', 'list', 'w']))).toEqual(['s2']);
  expect(names(await up.api.copySnapshots('w'))).toEqual(['s2']);
  expect((await outsider.weftd.weft(['snapshot', 'delete', 'w@s2'])).code).toBe(0);
  expect(await up.api.copySnapshots('w')).toEqual([]);
  // Only the node that is down keeps any now, and it did not hear of either delete.
  expect(await keptSnapshots(store, 'w')).toEqual({ nodes: [down.id], deleted: ['s1', 's2'] });
  const listed = await outsider.weftd.weft(['snapshot', 'list', 'w']);
  expect(listed.stderr).toMatch(new RegExp(`the snapshots of deleted volume w are kept on ${down.id}, and none of them is up`));
  const taken = await outsider.weftd.weft(['volume', 'create', 'w', '--size', '16MiB', '--replicas', '2']);
  expect(taken.stderr).toMatch(new RegExp(`snapshots of an earlier volume named w are kept on ${down.id}`));

  await cluster.restart(down);
  await waitFor(async () => (await keptSnapshots(store, 'w')) === undefined, 15_000, 200);
  expect(await down.api.copySnapshots('w')).toEqual([]);
  expect(down.weftd.logs()).toContain('deleted a snapshot of a deleted volume that was deleted while this node was away');
  await weftJson<VolumeInfo>(outsider.weftd, ['volume', 'create', 'w', '--size', '16MiB', '--replicas', '2']);
  expect(await weftJson<SnapshotInfo[]>(outsider.weftd, ['snapshot', 'list', 'w'])).toEqual([]);
  expect((await outsider.weftd.weft(['volume', 'delete', 'w'])).code).toBe(0);
});

test('a volume deleted without snapshots leaves no key: its name is free at once', async () => {
  await cluster.createOnN1('x', 16 * MiB, 3);
  expect((await cluster.nodes[2].weftd.weft(['volume', 'delete', 'x'])).code).toBe(0);
  expect(await keptSnapshots(store, 'x')).toBeUndefined();
  await weftJson<VolumeInfo>(cluster.nodes[2].weftd, ['volume', 'create', 'x', '--size', '16MiB', '--replicas', '3']);
  // At once: its record changes under the delete (its first promotion), which tries again.
  expect(await cluster.nodes[2].weftd.weft(['volume', 'delete', 'x'])).toMatchObject({ code: 0, stderr: '' });
});

test('a snapshot of a live volume that one copy cannot delete (a reader has it open there): refused, and a retry once it is let go deletes it on every copy', async () => {
  const shown = await cluster.createOnN1('u', 16 * MiB, 2);
  const n1 = cluster.node('n1');
  expect((await n1.weftd.weft(['snapshot', 'create', 'u', 's1'])).code).toBe(0);
  const reading = cluster.node(shown.replication!.replicas.find((r) => r.node !== 'n1')!.node);
  const reader = await NbdClient.connect({ host: '127.0.0.1', port: reading.weftd.nbdPort, exportName: 'u@s1' });
  let refused;
  try {
    refused = await n1.weftd.weft(['snapshot', 'delete', 'u@s1']);
  } finally {
    reader.close();
  }
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/u@s1/);
  // Until it is done, what is listed is what the copies hold: the retry finishes it.
  await waitFor(async () => (await n1.weftd.weft(['snapshot', 'delete', 'u@s1'])).code === 0, 10_000, 200);
  for (const holder of [n1, reading]) expect(await holder.api.copySnapshots('u')).toEqual([]);
  expect((await n1.weftd.weft(['snapshot', 'create', 'u', 's1'])).code).toBe(0); // the name is free on every copy
  expect((await n1.weftd.weft(['volume', 'delete', 'u'])).code).toBe(0);
  expect((await n1.weftd.weft(['snapshot', 'delete', 'u@s1'])).code).toBe(0);
});

test('a revert is refused while the volume is attached on a node (its attach claim), also one that holds no copy, or a plain NBD client there has it open; released, it goes through (a copy node that served clients before holds nothing up)', async () => {
  const shown = await cluster.createOnN1('r', 16 * MiB, 2); // two copies: the third node forwards to n1
  const copies = shown.replication!.replicas.map((x) => x.node);
  const n1 = cluster.node('n1');
  const elsewhere = cluster.nodes.find((n) => !copies.includes(n.id))!;
  // Written through the other copy's node: its connection to the primary stays open after the client left.
  await qemuIo(cluster.node(copies.find((id) => id !== 'n1')!).weftd.nbdUri('r'), ['write -P 0x11 0 1M', 'flush']);
  expect((await n1.weftd.weft(['snapshot', 'create', 'r', 'before'])).code).toBe(0);
  await qemuIo(elsewhere.weftd.nbdUri('r'), ['write -P 0x22 0 1M', 'flush']);

  await elsewhere.api.claimVolume('r');
  const refused = await n1.weftd.weft(['volume', 'revert', 'r@before']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain(`volume r is attached on node ${elsewhere.id}`);
  await qemuIo(elsewhere.weftd.nbdUri('r'), ['read -P 0x22 0 1M'], true); // nothing changed

  await elsewhere.api.releaseVolume('r');
  // Nor while a plain NBD client (no claim) on that node has it open: its node forwards it to n1.
  const client = await NbdClient.connect({ host: '127.0.0.1', port: elsewhere.weftd.nbdPort, exportName: 'r' });
  try {
    await client.write(0, Buffer.alloc(4096, 0x22), true);
    const inUse = await n1.weftd.weft(['volume', 'revert', 'r@before']);
    expect(inUse.code).not.toBe(0);
    expect(inUse.stderr).toContain(`volume r is in use by clients on node ${elsewhere.id}, forwarded to its primary n1`);
  } finally {
    client.close();
  }
  await waitFor(async () => (await n1.weftd.weft(['volume', 'revert', 'r@before'])).code === 0, 10_000, 200);
  await qemuIo(elsewhere.weftd.nbdUri('r'), ['read -P 0x11 0 1M'], true);
  expect((await n1.weftd.weft(['volume', 'delete', 'r'])).code).toBe(0);
  expect((await n1.weftd.weft(['snapshot', 'delete', 'r@before'])).code).toBe(0);
});

test("a volume deleted while a client of a node without a copy has it open (its connection to the primary cut just then): a volume made again under the name is not held up by that node, whose client gets ESHUTDOWN", async () => {
  await cluster.createOnN1('g', 16 * MiB, 1);
  const n1 = cluster.node('n1');
  const elsewhere = cluster.node('n2'); // no copy: it forwards to n1
  const client = await NbdClient.connect({ host: '127.0.0.1', port: elsewhere.weftd.nbdPort, exportName: 'g' });
  try {
    await client.write(0, Buffer.alloc(4096, 0x33), true);
    // Deleted while n1 does not see n2's connection (a primary that does refuses the delete).
    await cluster.deleteUnseenByForwarders(n1, 'g');
    await cluster.createOnN1('g', 16 * MiB, 1);
    expect((await n1.weftd.weft(['snapshot', 'create', 'g', 's'])).code).toBe(0);
    // Before, n1 still counted the old client's node among the new volume's users.
    const reverted = await n1.weftd.weft(['volume', 'revert', 'g@s']);
    expect(reverted.stderr).toBe('');
    expect(reverted.code).toBe(0);
    await expect(client.write(0, Buffer.alloc(4096, 0x44), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  } finally {
    client.close();
  }
  expect((await n1.weftd.weft(['volume', 'delete', 'g'])).code).toBe(0);
  expect((await n1.weftd.weft(['snapshot', 'delete', 'g@s'])).code).toBe(0);
});

// Last: it leaves a node down for good.
test('a node that will not come back, forgotten, no longer keeps a deleted volume\'s name taken', async () => {
  const shown = await cluster.createOnN1('f', 16 * MiB, 2);
  const gone = cluster.node(shown.replication!.replicas.find((r) => r.node !== 'n1')!.node);
  const outsider = cluster.nodes.find((n) => n.id !== 'n1' && n !== gone)!;
  expect((await outsider.weftd.weft(['snapshot', 'create', 'f', 's1'])).code).toBe(0);
  await cluster.kill9(gone);
  await waitFor(async () => (await outsider.api.listNodes()).find((n) => n.id === gone.id)?.state === 'down', 15_000, 200);

  const up = await outsider.weftd.weft(['node', 'forget', 'n1']);
  expect(up.stderr).toMatch(/node n1 is up: stop it \(and let its lease lapse\) before forgetting it/);
  const holding = await outsider.weftd.weft(['node', 'forget', gone.id]);
  expect(holding.stderr).toMatch(new RegExp(`volume f still has a copy on node ${gone.id}: wait until it is replaced`));

  expect((await outsider.weftd.weft(['volume', 'delete', 'f'])).code).toBe(0);
  expect((await outsider.weftd.weft(['snapshot', 'delete', 'f@s1'])).code).toBe(0);
  expect(await keptSnapshots(store, 'f')).toEqual({ nodes: [gone.id], deleted: ['s1'] });
  expect((await outsider.weftd.weft(['volume', 'create', 'f', '--size', '16MiB', '--replicas', '2'])).stderr).toMatch(/kept on/);

  const forgotten = await outsider.weftd.weft(['node', 'forget', gone.id]);
  expect([forgotten.code, forgotten.stdout.trim()]).toEqual([0, `forgot node "${gone.id}"`]);
  expect(await keptSnapshots(store, 'f')).toBeUndefined();
  expect((await store.list(`leftovers/${gone.id}/`)).length).toBe(0);
  expect((await outsider.api.listNodes()).map((n) => n.id)).not.toContain(gone.id);
  await weftJson<VolumeInfo>(outsider.weftd, ['volume', 'create', 'f', '--size', '16MiB', '--replicas', '2']);
});
