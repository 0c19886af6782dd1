// Revert and clone of replicated volumes with real parts: three weftd processes on a real etcd, a
// volume of two copies. A revert reaches every copy (each read below the routing) and is refused,
// changing nothing, while a client has a copy open or a copy is out of sync. A clone of its
// snapshot with --replicas 2 goes on the two nodes that hold the snapshot, each copy cloned from
// its own, and is written independently of its origin; what cannot be met is refused clearly.

import { NbdClient } from '../../fabric/nbd/client';
import type { VolumeInfo } from '../../fabric/volume/types';
import { copyUri, qemuIo, settled, weftJson } from '../helpers/replicas';
import { startEtcd } from '../helpers/etcd';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

describe('revert and clone of a replicated volume', () => {
  const nodes: WeftdHandle[] = [];
  const byId = (id: string) => nodes.find((n) => n.nodeId === id) as WeftdHandle;
  /** The nodes with a copy of v, and the one without. */
  let holders: WeftdHandle[];
  let outsider: WeftdHandle;

  beforeAll(async () => {
    const etcd = await startEtcd(1);
    for (const id of ['n1', 'n2', 'n3']) {
      const pools = ['ssd', 'hdd'].map((c) => `${c}:${makeTempDir(`weft-pool-${id}-${c}-`)}:${128 * MiB}`);
      nodes.push(await startWeftd({ pools, extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1'] }));
    }
    await weftJson<VolumeInfo>(nodes[0], ['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--class', 'ssd']);
    const shown = await settled(nodes[0], 'v');
    holders = shown.replication!.replicas.map((r) => byId(r.node));
    outsider = nodes.find((n) => !holders.includes(n)) as WeftdHandle;
    await qemuIo(outsider.nbdUri('v'), ['write -P 0x11 0 1M', 'flush']);
    expect((await outsider.weft(['snapshot', 'create', 'v', 's1'])).code).toBe(0);
    await qemuIo(outsider.nbdUri('v'), ['write -P 0x22 0 1M', 'write -P 0x33 8M 64k', 'flush']);
  });

  /** Every copy of name holds what the qemu-io reads say. */
  async function everyCopyReads(name: string, reads: string[]): Promise<void> {
    const shown = await settled(nodes[0], name);
    for (const r of shown.replication!.replicas) await qemuIo(await copyUri(byId(r.node), name), reads, true);
  }

  test('revert is refused while a client has a copy open, and changes nothing', async () => {
    const client = await NbdClient.connect({ host: '127.0.0.1', port: holders[1].nbdPort, exportName: 'v' });
    const refused = await outsider.weft(['volume', 'revert', 'v@s1']);
    client.close();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`volume v is in use on node ${holders[1].nodeId} by NBD client 127\\.0\\.0\\.1:\\d+: disconnect them before reverting`));
    await everyCopyReads('v', ['read -P 0x22 0 1M', 'read -P 0x33 8M 64k']);
  });

  test('revert, asked of a node without a copy, reverts every copy; writes after it reach every copy', async () => {
    // Once weftd has seen the client of the test above go.
    let reverted = await outsider.weft(['volume', 'revert', 'v@s1']);
    await waitFor(async () => reverted.code === 0 || (reverted = await outsider.weft(['volume', 'revert', 'v@s1'])).code === 0, 10_000, 200);
    expect(reverted.stderr).toBe('');
    expect(reverted.stdout).toMatch(/reverted volume "v" to snapshot "s1"/);
    await everyCopyReads('v', ['read -P 0x11 0 1M', 'read -P 0 8M 64k']);
    await qemuIo(holders[0].nbdUri('v'), ['write -P 0x44 4M 64k', 'flush']);
    await everyCopyReads('v', ['read -P 0x11 0 1M', 'read -P 0x44 4M 64k']);
    // The snapshot is still there, on every copy.
    for (const node of holders) expect((await weftJson<{ name: string }[]>(node, ['snapshot', 'list', 'v'])).map((s) => s.name)).toEqual(['s1']);
  });

  test('a clone of the snapshot with --replicas 2: a copy on each node that holds it, with its data; written apart from its origin', async () => {
    const clone = await weftJson<VolumeInfo>(outsider, ['volume', 'create', 'c', '--from-snapshot', 'v@s1', '--replicas', '2']);
    expect(clone.sourceSnapshot).toBe('v@s1');
    expect(clone.class).toBe('ssd');
    expect(clone.sizeBytes).toBe(64 * MiB);
    expect(clone.replication!.replicas.map((r) => r.node).sort()).toEqual(holders.map((n) => n.nodeId).sort());
    await everyCopyReads('c', ['read -P 0x11 0 1M', 'read -P 0 4M 64k']);
    await qemuIo(outsider.nbdUri('c'), ['write -P 0x55 0 64k', 'flush']);
    await everyCopyReads('c', ['read -P 0x55 0 64k', 'read -P 0x11 64k 960k']);
    await everyCopyReads('v', ['read -P 0x11 0 1M', 'read -P 0x44 4M 64k']);
    await qemuIo(outsider.nbdUri('v'), ['write -P 0x66 0 64k', 'flush']);
    await everyCopyReads('c', ['read -P 0x55 0 64k']);
    // In another class: its new writes go there.
    const hdd = await weftJson<VolumeInfo>(holders[0], ['volume', 'create', 'c-hdd', '--from-snapshot', 'v@s1', '--replicas', '2', '--class', 'hdd']);
    expect(hdd.class).toBe('hdd');
    await qemuIo(outsider.nbdUri('c-hdd'), ['write -P 0x77 1M 64k', 'flush']);
    await everyCopyReads('c-hdd', ['read -P 0x11 0 1M', 'read -P 0x77 1M 64k']);
    for (const name of ['c', 'c-hdd']) expect((await nodes[0].weft(['volume', 'delete', name])).code).toBe(0);
  });

  test('--replicas 1: a plain clone on a node that holds the snapshot; refused, naming them, elsewhere', async () => {
    const local = await weftJson<VolumeInfo>(holders[1], ['volume', 'create', 'one', '--from-snapshot', 'v@s1']);
    expect(local.replication).toBeUndefined();
    await qemuIo(holders[1].nbdUri('one'), ['read -P 0x11 0 1M'], true);
    expect((await holders[1].weft(['volume', 'delete', 'one'])).code).toBe(0);

    const refused = await outsider.weft(['volume', 'create', 'one', '--from-snapshot', 'v@s1', '--replicas', '1']);
    expect(refused.code).not.toBe(0);
    const [a, b] = holders.map((n) => n.nodeId);
    expect(refused.stderr).toMatch(new RegExp(`snapshot v@s1 is not on node ${outsider.nodeId}: .* on (${a} or ${b}|${b} or ${a})`));
    // With a locality that holds it, it is placed there.
    const there = await weftJson<VolumeInfo>(outsider, ['volume', 'create', 'one', '--from-snapshot', 'v@s1', '--locality', a]);
    expect(there.replication!.replicas.map((r) => r.node)).toEqual([a]);
    await qemuIo(outsider.nbdUri('one'), ['read -P 0x11 0 1M'], true);
    expect((await outsider.weft(['volume', 'delete', 'one'])).code).toBe(0);
  });

  test('a clone that cannot be made where the snapshot is is refused, and nothing is created on any node', async () => {
    const tooMany = await nodes[0].weft(['volume', 'create', 'bad', '--from-snapshot', 'v@s1', '--replicas', '3']);
    expect(tooMany.stderr).toMatch(/v@s1 is on 2 \(n\d, n\d\): 3 replicas are too many \(--replicas 2 at most\)/);
    const elsewhere = await nodes[0].weft(['volume', 'create', 'bad', '--from-snapshot', 'v@s1', '--locality', outsider.nodeId]);
    expect(elsewhere.stderr).toMatch(new RegExp(`locality: node ${outsider.nodeId} does not hold snapshot v@s1`));
    const missing = await nodes[0].weft(['volume', 'create', 'bad', '--from-snapshot', 'v@nope', '--replicas', '2']);
    expect(missing.stderr).toMatch(/snapshot v@nope does not exist/);
    const smaller = await nodes[0].weft(['volume', 'create', 'bad', '--from-snapshot', 'v@s1', '--replicas', '2', '--size', '1MiB']);
    expect(smaller.stderr).toMatch(/smaller than snapshot v@s1/);
    for (const node of nodes) expect((await weftJson<VolumeInfo[]>(node, ['volume', 'list'])).map((v) => v.name)).toEqual(['v']);
  });

  test('revert is refused while a copy is out of sync', async () => {
    const shown = await settled(nodes[0], 'v');
    const replica = holders.find((n) => n.nodeId !== shown.replication!.primary) as WeftdHandle;
    await replica.kill9();
    // The primary learns of it at the next write, and takes it out of the in-sync set.
    await qemuIo(outsider.nbdUri('v'), ['write -P 0x88 2M 64k', 'flush']);
    const refused = await outsider.weft(['volume', 'revert', 'v@s1']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`volume v: a revert needs every copy in sync; ${replica.nodeId} is out`));
    await qemuIo(outsider.nbdUri('v'), ['read -P 0x88 2M 64k', 'read -P 0x66 0 64k'], true);
    await replica.start();
    await everyCopyReads('v', ['read -P 0x88 2M 64k', 'read -P 0x44 4M 64k']);
  });
});
