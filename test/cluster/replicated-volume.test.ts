// Replicated volumes with real parts: three weftd processes on a real etcd. A volume created with
// --replicas 3 through any node has a copy on each; a write through any node reaches every copy;
// the primary killed with -9 is replaced by an in-sync replica that serves the same data at a
// higher epoch, through the same addresses; the old primary, restarted, is copied back in sync;
// placement refusals create nothing; a delete removes every copy.

import { execFileSync } from 'node:child_process';
import { status } from '@grpc/grpc-js';
import { WeftClient } from '../../fabric/api/client';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { leaseValue, volumeLeaseKey } from '../../fabric/cluster/volume-record';
import { NbdClient } from '../../fabric/nbd/client';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { copyUri, fioVerify, ok, qemuIo, settled, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

describe('replicated volumes on etcd', () => {
  let etcd: EtcdCluster;
  const nodes: WeftdHandle[] = [];
  const byId = (id: string) => nodes.find((n) => n.nodeId === id) as WeftdHandle;

  beforeAll(async () => {
    etcd = await startEtcd(1);
    for (const [id, zone] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']]) {
      const poolDir = makeTempDir(`weft-pool-${id}-`);
      nodes.push(
        await startWeftd({
          pools: [`ssd:${poolDir}:${256 * MiB}`],
          extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--zone', zone, '--advertise', '127.0.0.1'],
        }),
      );
    }
  });

  test('created through any node: a copy on each, one primary, every copy gets every write', async () => {
    const created = await weftJson<VolumeInfo>(nodes[1], ['volume', 'create', 'r1', '--size', '64MiB', '--replicas', '3']);
    expect(created.replication?.replicas.map((r) => r.node).sort()).toEqual(['n1', 'n2', 'n3']);
    const shown = await settled(nodes[0], 'r1');
    expect(shown.replication?.epoch).toBe(1);
    expect(shown.sizeBytes).toBe(64 * MiB);

    // Written through one node, read through each.
    await qemuIo(nodes[2].nbdUri('r1'), ['write -P 0x5a 0 1M', 'write -P 0xa5 32M 4k', 'flush']);
    for (const node of nodes) await qemuIo(node.nbdUri('r1'), ['read -P 0x5a 0 1M', 'read -P 0xa5 32M 4k'], true);
    // Each copy holds it.
    for (const node of nodes) await qemuIo(await copyUri(node, 'r1'), ['read -P 0x5a 0 1M', 'read -P 0xa5 32M 4k', 'read -P 0 1M 1M'], true);

    // The primary exports the copies' series; the other nodes export none for r1.
    const primary = byId(shown.replication!.primary);
    const metrics = await fetch(`http://127.0.0.1:${primary.metricsPort}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/\nweft_volume_epoch\{volume="r1"\} 1\n/);
    for (const copy of shown.replication!.replicas) expect(metrics).toContain(`weft_replica_state{volume="r1",replica="${copy.node}",state="in-sync"} 1`);
    expect(metrics).toMatch(/\nweft_replica_behind_bytes\{volume="r1",replica="n\d"\} 0\n/);
    expect(metrics).toMatch(/\nweft_replica_resync_copied_bytes_total\{volume="r1",replica="n\d"\} 0\n/);
    const other = nodes.find((n) => n !== primary) as WeftdHandle;
    expect(await fetch(`http://127.0.0.1:${other.metricsPort}/metrics`).then((r) => r.text())).not.toMatch(/weft_replica_state\{volume="r1"/);

    const table = await nodes[0].weft(['volume', 'show', 'r1']);
    expect(table.stdout).toMatch(/Replicas \(primary n\d, epoch 1\):/);
    expect(table.stdout).toMatch(/\nNODE\s+POOL\s+STATE\s+BEHIND\s+RESYNCED/);
    expect(table.stdout).toMatch(/\nn1(?: \(primary\))?\s+ssd\s+in-sync/);
    expect(shown.replication!.replicas.map((r) => r.pool)).toEqual(['ssd', 'ssd', 'ssd']);
  });

  test('the primary killed with -9: an in-sync replica serves the same data at the next epoch, through the same addresses', async () => {
    const before = await settled(nodes[0], 'r1');
    const primary = byId(before.replication!.primary);
    const survivor = nodes.find((n) => n !== primary) as WeftdHandle;
    await primary.kill9();
    const killedAt = Date.now();
    // A write through a surviving node is acknowledged once a replica has taken over.
    await qemuIo(survivor.nbdUri('r1'), ['write -P 0x77 2M 64k', 'flush']);
    const failoverMs = Date.now() - killedAt;
    console.log(`failover: kill -9 of the primary to the first acknowledged write: ${failoverMs} ms`);

    const after = await weftJson<VolumeInfo>(survivor, ['volume', 'show', 'r1']);
    expect(after.replication!.epoch).toBeGreaterThan(before.replication!.epoch);
    expect(after.replication!.primary).not.toBe(primary.nodeId);
    expect(after.replication!.replicas.find((r) => r.node === primary.nodeId)?.state).toBe('out');
    for (const node of nodes.filter((n) => n !== primary)) {
      await qemuIo(node.nbdUri('r1'), ['read -P 0x5a 0 1M', 'read -P 0x77 2M 64k', 'read -P 0xa5 32M 4k'], true);
    }

    // Back: it is copied in sync again, and its copy holds what was written while it was away.
    await primary.start();
    const healed = await settled(survivor, 'r1', before.replication!.epoch);
    expect(healed.replication!.replicas.map((r) => r.state)).toEqual(['in-sync', 'in-sync', 'in-sync']);
    await qemuIo(await copyUri(primary, 'r1'), ['read -P 0x5a 0 1M', 'read -P 0x77 2M 64k', 'read -P 0xa5 32M 4k'], true);
    // The new primary counts what it copied to it: what was written since the failover (64 KiB) and
    // the extents the old primary's activity log named (none: all it wrote had been flushed
    // everywhere), not the 1 MiB + 68 KiB the volume holds.
    const newPrimary = byId(healed.replication!.primary);
    const metrics = await fetch(`http://127.0.0.1:${newPrimary.metricsPort}/metrics`).then((r) => r.text());
    const copied = Number(new RegExp(`weft_replica_resync_copied_bytes_total\\{volume="r1",replica="${primary.nodeId}"\\} (\\d+)`).exec(metrics)?.[1]);
    expect(copied).toBeGreaterThanOrEqual(64 * 1024);
    expect(copied).toBeLessThan(MiB);
  });

  test('fio with crc32c verification through a non-primary node runs through a kill -9 of the primary', async () => {
    const before = await settled(nodes[0], 'r1');
    const primary = byId(before.replication!.primary);
    const via = nodes.find((n) => n !== primary) as WeftdHandle;
    let fioEnded = false;
    const fio = fioVerify(via.nbdUri('r1'), makeTempDir('weft-fio-')).finally(() => (fioEnded = true));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fioEnded).toBe(false); // the kill lands while fio writes
    await primary.kill9();
    const job = await fio;
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(24 * MiB);
    expect(job.read.io_bytes).toBe(24 * MiB);
    let after: VolumeInfo | undefined;
    await waitFor(async () => {
      after = await weftJson<VolumeInfo>(via, ['volume', 'show', 'r1']);
      return after.replication!.primary !== primary.nodeId;
    }, 30_000);
    after = after as VolumeInfo;
    await primary.start();
    await settled(via, 'r1', after.replication!.epoch - 1);
  });

  test('etcd down longer than the nodes\' leases: the primary serves on, and keeps the volume at its epoch once etcd is back (no failover)', async () => {
    const before = await settled(nodes[0], 'r1');
    const via = nodes.find((n) => n.nodeId !== before.replication!.primary) as WeftdHandle;
    await etcd.kill9(0);
    const downAt = Date.now();
    const dir = makeTempDir('weft-fio-');
    // Past the 3 s node lease: every node has lost its lease, and its primary leases with it.
    while (Date.now() - downAt < 6_000) expect((await fioVerify(via.nbdUri('r1'), dir)).error).toBe(0);
    await etcd.restart(0);
    // The leases etcd kept lapse (3 s), the nodes come back; I/O runs on meanwhile.
    const backAt = Date.now();
    while (Date.now() - backAt < 8_000) expect((await fioVerify(via.nbdUri('r1'), dir)).error).toBe(0);
    const after = await settled(nodes[0], 'r1');
    expect([after.replication!.primary, after.replication!.epoch]).toEqual([before.replication!.primary, before.replication!.epoch]);
    // Its primary lease is back, on the node's new lease.
    const store = await EtcdStore.open(etcd.endpoints);
    try {
      const lease = await store.get(volumeLeaseKey('r1'));
      expect(lease?.value).toBe(leaseValue({ node: before.replication!.primary, epoch: before.replication!.epoch }));
    } finally {
      await store.close();
    }
  });

  test('etcd down for 30 s: I/O on a healthy volume runs on; a primary killed meanwhile fails over once etcd is back, losing nothing', async () => {
    const before = await settled(nodes[0], 'r1');
    const primary = byId(before.replication!.primary);
    const via = nodes.find((n) => n !== primary) as WeftdHandle;
    await etcd.kill9(0);
    const downAt = Date.now();
    const dir = makeTempDir('weft-fio-');
    let runs = 0;
    while (Date.now() - downAt < 30_000) {
      const job = await fioVerify(via.nbdUri('r1'), dir);
      expect(job.error).toBe(0);
      runs++;
    }
    console.log(`etcd outage: ${runs} fio write+verify runs of 24 MiB passed in ${Date.now() - downAt} ms`);
    // Nothing can take over while etcd is down; once it is back, a replica does.
    await primary.kill9();
    await etcd.restart(0);
    await qemuIo(via.nbdUri('r1'), ['write -P 0x33 4M 64k', 'flush']);
    await qemuIo(via.nbdUri('r1'), ['read -P 0x5a 0 1M', 'read -P 0x77 2M 64k', 'read -P 0x33 4M 64k', 'read -P 0xa5 32M 4k'], true);
    await primary.start();
    const healed = await settled(via, 'r1', before.replication!.epoch);
    expect(healed.replication!.primary).not.toBe(primary.nodeId);
  });

  test('a snapshot and a resize reach every copy; a snapshot deleted goes from every copy', async () => {
    await settled(nodes[0], 'r1');
    await qemuIo(nodes[1].nbdUri('r1'), ['write -P 0x66 8M 64k', 'flush']);
    // Asked of any node: the primary takes it on every copy.
    const snap = await nodes[2].weft(['snapshot', 'create', 'r1', 's1']);
    expect(snap.stderr).toBe('');
    await qemuIo(nodes[1].nbdUri('r1'), ['write -P 0x67 8M 64k', 'flush']);
    for (const node of nodes) {
      // Each copy's snapshot holds what was written before it, not after.
      await qemuIo(node.nbdUri('r1@s1'), ['read -P 0x66 8M 64k', 'read -P 0x5a 0 1M'], true);
      expect((await weftJson<{ name: string }[]>(node, ['snapshot', 'list', 'r1'])).map((s) => s.name)).toEqual(['s1']);
    }
    const grown = await weftJson<VolumeInfo>(nodes[0], ['volume', 'resize', 'r1', '--size', '96MiB']);
    expect(grown.sizeBytes).toBe(96 * MiB);
    for (const node of nodes) {
      expect((await weftJson<VolumeInfo>(node, ['volume', 'show', 'r1'])).sizeBytes).toBe(96 * MiB);
      await qemuIo(node.nbdUri('r1'), ['read -P 0 90M 1M', 'read -P 0x67 8M 64k'], true);
    }
    // Reverting to s1 would shrink r1 back to 64 MiB, which the cluster's record of it cannot.
    const reverted = await nodes[0].weft(['volume', 'revert', 'r1@s1']);
    expect(reverted.code).not.toBe(0);
    expect(reverted.stderr).toMatch(/volume r1 was grown to 100663296 bytes after snapshot s1 \(67108864 bytes\): a replicated volume does not shrink; clone the snapshot instead/);
    await qemuIo(nodes[0].nbdUri('r1'), ['read -P 0x67 8M 64k'], true);
    await nodes[1].weft(['snapshot', 'delete', 'r1@s1']);
    for (const node of nodes) expect(await weftJson<unknown[]>(node, ['snapshot', 'list', 'r1'])).toEqual([]);
  });

  test('a request placement cannot meet is refused, and nothing is created on any node', async () => {
    const tooMany = await nodes[0].weft(['volume', 'create', 'bad', '--size', '16MiB', '--replicas', '4']);
    expect(tooMany.code).not.toBe(0);
    expect(tooMany.stderr).toMatch(/4 replicas need 4 nodes .* 3 qualify/);
    const tooBig = await nodes[0].weft(['volume', 'create', 'bad', '--size', '1GiB', '--replicas', '2']);
    expect(tooBig.stderr).toMatch(/smaller than the volume/);
    const noClass = await nodes[0].weft(['volume', 'create', 'bad', '--size', '16MiB', '--replicas', '2', '--class', 'hdd']);
    expect(noClass.stderr).toMatch(/no node of the cluster has a pool of class "hdd" \(classes: ssd\)/);
    const unknownNode = await nodes[0].weft(['volume', 'create', 'bad', '--size', '16MiB', '--replicas', '2', '--locality', 'n9']);
    expect(unknownNode.stderr).toMatch(/locality: no node "n9"/);
    for (const node of nodes) {
      const names = (await weftJson<VolumeInfo[]>(node, ['volume', 'list'])).map((v) => v.name);
      expect(names).not.toContain('bad');
    }
  });

  test('locality puts the primary on the named node', async () => {
    await weftJson<VolumeInfo>(nodes[0], ['volume', 'create', 'r2', '--size', '16MiB', '--replicas', '2', '--locality', 'n3']);
    const shown = await settled(nodes[0], 'r2');
    expect(shown.replication!.primary).toBe('n3');
    expect(shown.replication!.replicas[0].node).toBe('n3');
  });

  test('a snapshot verified through a node without a copy is refused, naming the nodes of the copies (it was NOT_FOUND: "does not exist"); its stats there are zeros', async () => {
    const holders = (await settled(nodes[0], 'r2')).replication!.replicas.map((r) => r.node);
    const without = nodes.find((n) => !holders.includes(n.nodeId!))!;
    await ok(without.weft(['snapshot', 'create', 'r2', 'checked']));
    const refused = await without.weft(['volume', 'verify', 'r2@checked']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(`snapshot r2@checked is on the nodes of the volume's copies (${holders.join(', ')}), not on this one`);
    await ok(byId(holders[0]).weft(['volume', 'verify', 'r2@checked']));
    // Its I/O counters there are zeros, not NOT_FOUND ("does not exist").
    const stats = await without.weft(['volume', 'stats', 'r2@checked', '--interval', '100ms', '--output', 'json']);
    expect([stats.code, stats.stderr]).toEqual([0, '']);
    expect(JSON.parse(stats.stdout)).toMatchObject({ volume: 'r2@checked' });
    expect((await without.weft(['volume', 'stats', 'r2@nothing', '--interval', '100ms'])).stderr).toMatch(/snapshot r2@nothing does not exist/);
  });

  // Two creates of one name: the one that lost the race to the record must not take over (and then,
  // undoing its create, delete) a copy of the one that won.
  test('a create\'s copy of a name the store has recorded is refused, and the recorded volume\'s copy stays', async () => {
    await weftJson<VolumeInfo>(nodes[0], ['volume', 'create', 'won', '--size', '16MiB', '--replicas', '2', '--locality', 'n2']);
    await qemuIo(nodes[0].nbdUri('won'), ['write -P 0x3c 0 64k', 'flush']);
    const api = new WeftClient(`127.0.0.1:${byId('n2').apiPort}`);
    try {
      await expect(api.createCopy('won', 16 * MiB, 'ssd', undefined, { id: 'the-losing-create', marked: true })).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
    } finally {
      api.close();
    }
    await qemuIo(await copyUri(byId('n2'), 'won'), ['read -P 0x3c 0 64k'], true);
  });

  test('a volume of one node alone cannot take the name of a volume of the cluster, on any node', async () => {
    const shared = await weftJson<VolumeInfo>(nodes[0], ['volume', 'create', 'shared', '--size', '16MiB', '--replicas', '2', '--locality', 'n1']);
    const holders = shared.replication!.replicas.map((r) => r.node);
    for (const node of nodes) {
      const local = await node.weft(['volume', 'create', 'shared', '--size', '8MiB']);
      expect(local.code).not.toBe(0);
      expect(local.stderr).toMatch(/volume shared already exists in the cluster/);
      const shown = await weftJson<VolumeInfo>(node, ['volume', 'show', 'shared']);
      expect([shown.sizeBytes, shown.replication?.replicas.map((r) => r.node)]).toEqual([16 * MiB, holders]);
    }
  });

  test('nor can a volume of the cluster take the name of a volume of one node alone, on whichever node it is', async () => {
    const local = await weftJson<VolumeInfo>(byId('n3'), ['volume', 'create', 'mine', '--size', '8MiB']);
    expect(local.replication).toBeUndefined();
    for (const args of [['--replicas', '2', '--locality', 'n1'], ['--replicas', '1', '--locality', 'n2']]) {
      const refused = await nodes[0].weft(['volume', 'create', 'mine', '--size', '16MiB', ...args]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/volume mine exists on node n3 as a volume of that node alone: delete it there, or choose another name/);
    }
    for (const node of nodes) expect((await weftJson<VolumeInfo[]>(node, ['volume', 'list'])).filter((v) => v.name === 'mine').length).toBe(node === byId('n3') ? 1 : 0);
    // n3 down: it cannot be asked, its registration (written at its start) names the volume.
    const n3 = byId('n3');
    await n3.restart();
    await n3.kill9();
    const state = async (id: string) => (await weftJson<{ id: string; state: string }[]>(nodes[0], ['node', 'list'])).find((n) => n.id === id)?.state;
    await waitFor(async () => (await state('n3')) === 'down', 15_000, 200);
    const whileDown = await nodes[0].weft(['volume', 'create', 'mine', '--size', '16MiB', '--replicas', '2']);
    expect(whileDown.code).not.toBe(0);
    expect(whileDown.stderr).toMatch(/volume mine exists on node n3 as a volume of that node alone \(as it registered; it is down\)/);
    await n3.start();
    expect((await weftJson<VolumeInfo>(n3, ['volume', 'show', 'mine'])).replication).toBeUndefined(); // still its own
    expect((await n3.weft(['volume', 'delete', 'mine'])).code).toBe(0);
  });

  test('the whole cluster killed with -9 and restarted keeps the volume and its data', async () => {
    const before = await settled(nodes[0], 'r1');
    await Promise.all(nodes.map((n) => n.kill9()));
    for (const node of nodes) await node.start();
    const after = await settled(nodes[1], 'r1', before.replication!.epoch);
    expect(after.sizeBytes).toBe(before.sizeBytes);
    for (const node of nodes) await qemuIo(node.nbdUri('r1'), ['read -P 0x5a 0 1M', 'read -P 0x33 4M 64k', 'read -P 0x67 8M 64k'], true);
  });

  test('delete is refused while a client has a copy open, then removes every copy', async () => {
    // n3 holds a copy of r2 (its primary by locality, unless the restart above moved it): a client attached there holds it open.
    const client = await NbdClient.connect({ host: '127.0.0.1', port: byId('n3').nbdPort, exportName: 'r2' });
    const refused = await nodes[0].weft(['volume', 'delete', 'r2']);
    client.close();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/volume r2 is in use on node n3 by NBD client 127\.0\.0\.1:\d+: disconnect them first/);
    // Once weftd has seen the client go (its count includes the primary's replication connection
    // when n3 is no longer the primary, so the delete itself is what tells).
    let deleted = refused;
    await waitFor(async () => (deleted = await nodes[2].weft(['volume', 'delete', 'r2'])).code === 0, 10_000, 200);
    expect(deleted.stderr).toBe('');
    for (const node of nodes) {
      const names = (await weftJson<VolumeInfo[]>(node, ['volume', 'list'])).map((v) => v.name);
      expect(names).not.toContain('r2');
    }
    // r1 is still there and still served.
    await qemuIo(nodes[0].nbdUri('r1'), ['read -P 0x5a 0 1M'], true);
  });

  test('delete is refused while a client is attached through a node without a copy (forwarded to the primary), and goes once it has left', async () => {
    await weftJson<VolumeInfo>(nodes[0], ['volume', 'create', 'r3', '--size', '16MiB', '--replicas', '1', '--locality', 'n1']);
    await settled(nodes[0], 'r3');
    // n2 holds no copy of r3: it lists it all the same (NBD_OPT_LIST), and forwards this client's requests to n1.
    const listed = JSON.parse(execFileSync('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${byId('n2').nbdPort}`], { encoding: 'utf8' })) as { exports: { 'export-name': string; 'export-size': number }[] };
    expect(listed.exports.find((e) => e['export-name'] === 'r3')).toMatchObject({ 'export-size': 16 * MiB });
    const client = await NbdClient.connect({ host: '127.0.0.1', port: byId('n2').nbdPort, exportName: 'r3' });
    try {
      await client.write(0, Buffer.alloc(4096, 0x71), true);
      const refused = await nodes[2].weft(['volume', 'delete', 'r3']);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/volume r3 is in use by clients on node n2, forwarded to its primary n1: disconnect them first/);
      await qemuIo(nodes[0].nbdUri('r3'), ['read -P 0x71 0 4k'], true); // nothing changed
    } finally {
      client.close();
    }
    // n2 lets go of its connection to n1 with its last client.
    let deleted = await nodes[0].weft(['volume', 'delete', 'r3']);
    await waitFor(async () => deleted.code === 0 || ((deleted = await nodes[0].weft(['volume', 'delete', 'r3'])).code === 0), 10_000, 200);
    expect(deleted.stderr).toBe('');
    // Each node lists from its view of the store, which follows a moment later.
    for (const node of nodes) await waitFor(async () => !(await weftJson<VolumeInfo[]>(node, ['volume', 'list'])).some((v) => v.name === 'r3'), 10_000, 100);
  });
});
