// Delta resync across a failover, with real parts: three weftd on a real etcd. A replica is killed,
// 64 MiB are written while it is away, then the primary is killed too: the copy promoted in its
// place knows, from its own absence log, what the returning replica lacks, and copies only that
// (not the volume's allocated 112 MiB), and the returning copy then holds every write. A former
// primary's activity log also evens out the copies its last writes in flight left unequal.

import type { VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { qemuIo, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, run, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(240_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

/** qemu-io commands for `op -P pattern` over [offsetMiB, offsetMiB + lengthMiB) in 4 MiB requests. */
function spanCommands(op: 'write' | 'read', pattern: number, offsetMiB: number, lengthMiB: number): string[] {
  const commands: string[] = [];
  for (let at = offsetMiB; at < offsetMiB + lengthMiB; at += 4) commands.push(`${op} -P 0x${pattern.toString(16)} ${at}M 4M`);
  return commands;
}

describe('delta resync across a failover', () => {
  let etcd: EtcdCluster;
  const nodes: WeftdHandle[] = [];
  const byId = (id: string) => nodes.find((n) => n.nodeId === id) as WeftdHandle;

  beforeAll(async () => {
    etcd = await startEtcd(1);
    nodes.push(...(await startNodes(etcd, ['n1', 'n2', 'n3'], 256 * MiB)).map((n) => n.weftd));
  });

  async function inSync(via: WeftdHandle, name: string, above: number): Promise<VolumeInfo> {
    let shown: VolumeInfo | undefined;
    await waitFor(
      async () => {
        shown = await weftJson<VolumeInfo>(via, ['volume', 'show', name]).catch(() => undefined);
        const r = shown?.replication;
        return r !== undefined && r.epoch > above && r.replicas.every((c) => c.state === 'in-sync');
      },
      120_000,
      250,
    );
    return shown as VolumeInfo;
  }

  test('the promoted copy resyncs a returning replica with only the 64 MiB it missed', async () => {
    const [n1, n2, n3] = nodes;
    await weftJson(n2, ['volume', 'create', 'd1', '--size', '160MiB', '--replicas', '3', '--locality', 'n1']);
    const start = await inSync(n2, 'd1', 0);
    expect(start.replication?.primary).toBe('n1');
    await qemuIo(n2.nbdUri('d1'), [...spanCommands('write', 0x11, 0, 48), 'flush']);

    await n3.kill9();
    await qemuIo(n2.nbdUri('d1'), [...spanCommands('write', 0x22, 64, 64), 'flush']);
    await n1.kill9();
    // Acknowledged once n2 has taken over (it is the only copy in step left).
    await qemuIo(n2.nbdUri('d1'), ['write -P 0x33 150M 4k', 'flush']);
    const failedOver = await weftJson<VolumeInfo>(n2, ['volume', 'show', 'd1']);
    expect(failedOver.replication?.primary).toBe('n2');

    await n3.start();
    await waitFor(
      async () => (await weftJson<VolumeInfo>(n2, ['volume', 'show', 'd1'])).replication?.replicas.find((r) => r.node === 'n3')?.state === 'in-sync',
      120_000,
      250,
    );
    const metrics = await fetch(`http://127.0.0.1:${byId('n2').metricsPort}/metrics`).then((r) => r.text());
    const copied = Number(/weft_replica_resync_copied_bytes_total\{volume="d1",replica="n3"\} (\d+)/.exec(metrics)?.[1]);
    console.log(`delta resync across a failover: 64 MiB written while away, ${(copied / MiB).toFixed(2)} MiB copied`);
    expect(copied).toBeGreaterThanOrEqual(64 * MiB + 4096);
    expect(copied).toBeLessThanOrEqual(1.2 * 64 * MiB);

    // n3's own copy holds everything, what it had and what it missed.
    const epoch = (await weftJson<VolumeInfo>(n3, ['volume', 'show', 'd1'])).epoch;
    const copy = n3.nbdUri(`d1~epoch=${epoch}`);
    await qemuIo(copy, [...spanCommands('read', 0x11, 0, 48), ...spanCommands('read', 0x22, 64, 64), 'read -P 0x33 150M 4k', 'read -P 0 48M 16M'], true);

    // The old primary comes back too (a full copy: it may hold writes no other copy got).
    await n1.start();
    await inSync(n2, 'd1', start.replication!.epoch);
    await qemuIo(n1.nbdUri('d1'), [...spanCommands('read', 0x22, 64, 64), 'read -P 0x33 150M 4k'], true);
  });

  test('a primary killed mid-write comes back with what it missed plus the extents its activity log named, and the copies agree', async () => {
    const [n1, n2] = nodes;
    await weftJson(n2, ['volume', 'create', 'd2', '--size', '160MiB', '--replicas', '3', '--locality', 'n1']);
    const start = await inSync(n2, 'd2', 0);
    expect(start.replication?.primary).toBe('n1');
    await qemuIo(n2.nbdUri('d2'), [...spanCommands('write', 0x11, 0, 48), 'flush']);
    // Writes in flight when the primary dies: through n2, to an 8 MiB region, never flushed.
    const writer = run('fio', ['--name=inflight', '--ioengine=nbd', `--uri=${n2.nbdUri('d2')}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
      '--offset=128M', '--size=8M', '--time_based', '--runtime=6', '--randrepeat=0'], { timeoutMs: 120_000 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await n1.kill9();
    expect((await writer).code).toBe(0);
    await qemuIo(n2.nbdUri('d2'), [...spanCommands('write', 0x22, 64, 16), 'flush']);
    const failedOver = await weftJson<VolumeInfo>(n2, ['volume', 'show', 'd2']);
    const primary = nodes.find((n) => n.nodeId === failedOver.replication?.primary) as WeftdHandle;
    expect(primary.nodeId).not.toBe('n1');

    await n1.start();
    const healed = await inSync(n2, 'd2', start.replication!.epoch);
    const metrics = await fetch(`http://127.0.0.1:${primary.metricsPort}/metrics`).then((r) => r.text());
    const copied = Number(/weft_replica_resync_copied_bytes_total\{volume="d2",replica="n1"\} (\d+)/.exec(metrics)?.[1]);
    console.log(`former primary back: 16 MiB written since, ${(copied / MiB).toFixed(2)} MiB copied (a full copy would be at least 72 MiB)`);
    expect(copied).toBeGreaterThanOrEqual(16 * MiB);
    // 16 MiB, plus at most the 8 MiB region written through the failover (since, or logged before it), on 4 MiB extents.
    expect(copied).toBeLessThanOrEqual(16 * MiB + 16 * MiB);
    // Where the old primary may have held writes the others lacked, it was copied over: every copy agrees.
    const report = await weftJson<VerifyReport>(primary, ['volume', 'verify', 'd2']);
    expect(report.skippedReplicas ?? []).toEqual([]);
    expect(report.replicas!.map((r) => [r.node, r.checksumRepairedBlocks, r.mismatchRepairedBlocks]).sort()).toEqual(
      healed.replication!.replicas.map((r) => [r.node, 0, 0]).sort(),
    );
    await qemuIo(n1.nbdUri('d2'), [...spanCommands('read', 0x11, 0, 48), ...spanCommands('read', 0x22, 64, 16)], true);
  });

  test('copies in step that a crashed primary left unequal are made equal by the new primary before it serves', async () => {
    const [n1, n2, n3] = nodes;
    await weftJson(n2, ['volume', 'create', 'd3', '--size', '64MiB', '--replicas', '3', '--locality', 'n1']);
    const start = await inSync(n2, 'd3', 0);
    await qemuIo(n2.nbdUri('d3'), ['write -P 0x11 0 8M', 'flush']);
    // Not flushed (qemu-io would flush as it closes; fio's nbd engine does not): the primary's
    // activity log keeps naming its extent.
    const unflushed = await run('fio', ['--name=unflushed', '--ioengine=nbd', `--uri=${n2.nbdUri('d3')}`, '--rw=write', '--bs=4k', '--offset=20M', '--size=4k', '--buffer_pattern=0x44']);
    expect(unflushed.code).toBe(0);
    // A write of the primary's still in flight at its crash, that reached n3 and not n2 (the primary
    // logged its extent before sending it): n3's copy gets other data there, straight through the
    // replication export, as a primary at this epoch would send it.
    await qemuIo(n3.nbdUri(`d3~epoch=${start.replication!.epoch}`), ['write -P 0x55 20M 4k', 'flush']);
    await n1.kill9();
    await waitFor(async () => (await weftJson<VolumeInfo>(n2, ['volume', 'show', 'd3'])).replication!.epoch > start.replication!.epoch, 60_000, 250);
    // n2 and n3 recorded n1's activity log: the one promoted made the other equal to it there
    // before it served (a read through the volume waits for that), n1 still down.
    await qemuIo(n2.nbdUri('d3'), ['read 0 4k'], true);
    const epoch = start.replication!.epoch + 1;
    const dump = async (node: WeftdHandle) => (await qemuIo(node.nbdUri(`d3~epoch=${epoch}`), ['read -v 20M 16'], true)).split('\n')[0];
    const [onN2, onN3] = await Promise.all([dump(n2), dump(n3)]);
    expect(onN2).toMatch(/^01400000: {2}(44|55) /);
    expect(onN3).toBe(onN2);

    await n1.start();
    const healed = await inSync(n2, 'd3', start.replication!.epoch);
    const primary = byId(healed.replication!.primary);
    const equalizedLine = () => primary.logs().split('\n').find((line) => line.includes('copies in step made equal') && line.includes('"volume":"d3"'));
    await waitFor(() => equalizedLine() !== undefined, 30_000, 250);
    const equalized = equalizedLine() as string;
    // n1's return finds them equal already, by checksum: the 4 MiB extent n1's log names is not read.
    expect(JSON.parse(equalized)).toMatchObject({ volume: 'd3', formerPrimary: 'n1', comparedBlocks: 1024, checkedBlocks: 0, repairedBlocks: 0 });
    // And n1 gets of that extent only the block where it differs from the new primary's copy (none
    // if n2, which has n1's 0x44 there, serves): nothing was written since the failover.
    const metrics = await fetch(`http://127.0.0.1:${primary.metricsPort}/metrics`).then((r) => r.text());
    const copied = Number(/weft_replica_resync_copied_bytes_total\{volume="d3",replica="n1"\} (\d+)/.exec(metrics)?.[1]);
    expect(copied).toBe(primary === n3 ? 4096 : 0);
    // Every copy now holds what the new primary served there, so no failover can show other data.
    const report = await weftJson<VerifyReport>(primary, ['volume', 'verify', 'd3']);
    expect(report.replicas!.map((r) => [r.node, r.checksumRepairedBlocks, r.mismatchRepairedBlocks]).sort()).toEqual([['n1', 0, 0], ['n2', 0, 0], ['n3', 0, 0]]);
    const served = primary === n3 ? 0x55 : 0x44;
    for (const node of nodes) await qemuIo(node.nbdUri(`d3~epoch=${healed.replication!.epoch}`), [`read -P 0x${served.toString(16)} 20M 4k`, 'read -P 0x11 0 8M'], true);
  });
});
