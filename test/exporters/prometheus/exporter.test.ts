// The Prometheus exporter of a real weftd (two nodes on etcd, a replicated and a local volume, I/O
// through NBD with qemu-io): every family with its type and labels, values that match the I/O done,
// `promtool check metrics` silent about weft_ families, a deleted volume's series gone, /healthz and
// /readyz (503 once the cluster store is gone), `weft class list`, and weftd with --metrics-port off;
// an attached volume's I/O labelled with its workload, and weft_volume_info.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { WeftClient } from '../../../fabric/api/client';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd';
import { damageBlock, qemuIo, settled, startNodes, weftJson, type ClusterNodeHandle } from '../../helpers/replicas';
import { waitFor } from '../../helpers/wait-for';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../../helpers/weftd';
import { parseExposition, valueOf, type Family } from './exposition';

const MiB = 1024 * 1024;

afterAll(cleanupAll);

const scrape = async (node: WeftdHandle) => parseExposition(await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text());

/** Every weft_ family a scrape of a primary under I/O has: its type and the labels of its series. */
const FAMILIES: [string, string, string[]][] = [
  ['weft_volume_operations_total', 'counter', ['operation', 'volume']],
  ['weft_volume_errors_total', 'counter', ['kind', 'operation', 'volume']],
  ['weft_volume_bytes_total', 'counter', ['direction', 'volume']],
  ['weft_volume_operation_seconds', 'histogram', ['le', 'operation', 'volume']],
  ['weft_volume_in_flight_requests', 'gauge', ['volume']],
  ['weft_volume_capacity_bytes', 'gauge', ['class', 'volume']],
  ['weft_volume_allocated_bytes', 'gauge', ['class', 'volume']],
  ['weft_volume_checksum_errors_total', 'counter', ['volume']],
  ['weft_pool_capacity_bytes', 'gauge', ['class']],
  ['weft_pool_used_bytes', 'gauge', ['class']],
  ['weft_pool_provisioned_bytes', 'gauge', ['class']],
  ['weft_pool_state', 'gauge', ['class', 'state']],
  ['weft_sla_objective_read_latency_p99_seconds', 'gauge', ['class']],
  ['weft_sla_objective_write_latency_p99_seconds', 'gauge', ['class']],
  ['weft_sla_objective_availability_ratio', 'gauge', ['class']],
  ['weft_nbd_connections', 'gauge', []],
  ['weft_nbd_connections_refused_total', 'counter', []],
  ['weft_api_requests_total', 'counter', ['code', 'method']],
  ['weft_api_request_seconds', 'histogram', ['code', 'le', 'method']],
  ['weft_journal_bytes', 'gauge', []],
  ['weft_journal_checkpoint_seconds', 'histogram', ['le']],
  ['weft_event_loop_delay_seconds', 'summary', ['quantile']],
  ['weft_volume_epoch', 'gauge', ['volume']],
  ['weft_replica_state', 'gauge', ['replica', 'state', 'volume']],
  ['weft_replica_behind_bytes', 'gauge', ['replica', 'volume']],
  ['weft_replica_resync_size_bytes', 'gauge', ['replica', 'volume']],
  ['weft_replica_resync_copied_bytes_total', 'counter', ['replica', 'volume']],
  ['weft_replica_resync_progress_ratio', 'gauge', ['replica', 'volume']],
];

/** The label names of a family's series, without the le or quantile of its _sum and _count. */
function labelNames(family: Family): string[] {
  const names = new Set(family.series.filter((s) => !/_(sum|count)$/.test(s.name)).flatMap((s) => Object.keys(s.labels)));
  return [...names].sort();
}

describe('a weftd cluster scraped under I/O', () => {
  let etcd: EtcdCluster;
  let nodes: ClusterNodeHandle[];
  let primary: WeftdHandle;
  let local: ClusterNodeHandle;

  beforeAll(async () => {
    etcd = await startEtcd(1);
    const config = path.join(makeTempDir('weft-classes-'), 'weftd.yaml');
    fs.writeFileSync(config, 'classes:\n  ssd: {objectives: {readLatencyP99: 2ms, writeLatencyP99: 5ms, availability: 99.9%}}\n  hdd: {objectives: {availability: 99%}}\n');
    nodes = await startNodes(etcd, ['n1', 'n2'], 256 * MiB, ['--config', config]);
    await weftJson(nodes[0].weftd, ['volume', 'create', 'rep', '--size', '64MiB', '--replicas', '2']);
    const shown = await settled(nodes[0].weftd, 'rep');
    primary = nodes.find((n) => n.weftd.nodeId === shown.replication!.primary)!.weftd;
    local = nodes.find((n) => n.weftd === primary)!;
    await weftJson(primary, ['volume', 'create', 'plain', '--size', '16MiB']);
  }, 120_000);

  it('has every family with its type and labels, and counts what was done', async () => {
    await qemuIo(primary.nbdUri('rep'), ['write -P 0x5a 0 1M', 'write -z 1M 64k', 'discard 2M 64k', 'flush', 'read -P 0x5a 0 1M']);
    // A block that fails its checksum: a read error of kind checksum on the local volume.
    await qemuIo(primary.nbdUri('plain'), [`write -P 0x3c 0 4k`, 'flush']);
    damageBlock(local.poolDir, Buffer.alloc(4096, 0x3c));
    await expect(qemuIo(primary.nbdUri('plain'), ['read 0 4k'], true)).rejects.toThrow();
    expect((await primary.weft(['volume', 'show', 'nonexistent'])).code).toBe(1);

    const families = await scrape(primary);
    const found = FAMILIES.map(([name]) => {
      const family = families.get(name);
      return [name, family?.type, family && labelNames(family)];
    });
    expect(found).toEqual(FAMILIES);

    const rep = { volume: 'rep' };
    expect(valueOf(families, 'weft_volume_operations_total', { ...rep, operation: 'write' })).toBe(1);
    expect(valueOf(families, 'weft_volume_operations_total', { ...rep, operation: 'write_zeroes' })).toBe(1);
    expect(valueOf(families, 'weft_volume_operations_total', { ...rep, operation: 'trim' })).toBe(1);
    expect(valueOf(families, 'weft_volume_bytes_total', { ...rep, direction: 'write' })).toBe(MiB);
    expect(valueOf(families, 'weft_volume_bytes_total', { ...rep, direction: 'read' })).toBe(MiB);
    expect(valueOf(families, 'weft_volume_operation_seconds_count', { ...rep, operation: 'read' })).toBe(1);
    expect(valueOf(families, 'weft_volume_operation_seconds_bucket', { ...rep, operation: 'read', le: '10' })).toBe(1);
    expect(valueOf(families, 'weft_volume_in_flight_requests', rep)).toBe(0);
    expect(valueOf(families, 'weft_volume_capacity_bytes', { ...rep, class: 'ssd' })).toBe(64 * MiB);
    expect(valueOf(families, 'weft_volume_allocated_bytes', { ...rep, class: 'ssd' })).toBeGreaterThanOrEqual(MiB);
    expect(valueOf(families, 'weft_volume_errors_total', { volume: 'plain', operation: 'read', kind: 'checksum' })).toBe(1);
    expect(valueOf(families, 'weft_volume_errors_total', { volume: 'plain', operation: 'read', kind: 'eio' })).toBe(0);
    expect(valueOf(families, 'weft_volume_checksum_errors_total', { volume: 'plain' })).toBe(1);
    expect(valueOf(families, 'weft_sla_objective_read_latency_p99_seconds', { class: 'ssd' })).toBe(0.002);
    expect(valueOf(families, 'weft_sla_objective_write_latency_p99_seconds', { class: 'ssd' })).toBe(0.005);
    expect(valueOf(families, 'weft_sla_objective_availability_ratio', { class: 'hdd' })).toBe(0.99);
    expect(valueOf(families, 'weft_sla_objective_read_latency_p99_seconds', { class: 'hdd' })).toBeUndefined();
    expect(valueOf(families, 'weft_api_requests_total', { method: 'weft.v1.VolumeService/GetVolume', code: 'NOT_FOUND' })).toBe(1);
    expect(valueOf(families, 'weft_journal_bytes')).toBeGreaterThan(0);
    const other = nodes.find((n) => n.weftd !== primary)!.weftd;
    expect(valueOf(families, 'weft_replica_state', { ...rep, replica: other.nodeId, state: 'in-sync' })).toBe(1);
    expect(valueOf(families, 'weft_replica_resync_progress_ratio', { ...rep, replica: other.nodeId })).toBe(1);
    expect(valueOf(families, 'weft_volume_epoch', rep)).toBe(1);
    // The primary's replication connection to the other copy.
    expect(valueOf(await scrape(other), 'weft_nbd_connections')).toBeGreaterThanOrEqual(1);
  });

  it('writes a scrape that promtool finds nothing to say about in the weft_ families', async () => {
    const exposition = await (await fetch(`http://127.0.0.1:${primary.metricsPort}/metrics`)).text();
    const checked = await run('promtool', ['check', 'metrics'], { input: exposition });
    const aboutWeft = (checked.stdout + checked.stderr).split('\n').filter((line) => line.includes('weft_'));
    expect(aboutWeft).toEqual([]);
  });

  it('labels the I/O of an attached volume with its workload, and gives weft_volume_info to join on, while it is attached', async () => {
    const api = new WeftClient(`127.0.0.1:${primary.apiPort}`);
    try {
      // As the CSI node service records a stage with its pod (weft attachment list shows it).
      await api.recordAttachment({
        volume: 'rep', nodeId: primary.nodeId, devicePath: '/dev/loop9', method: 'nbdfuse-loop', stagingPath: '/staging/rep',
        workloads: [{ orchestrator: 'kubernetes', podName: 'web-0', podNamespace: 'shop', podUid: 'u-1', pvcName: 'data-web-0', pvcNamespace: 'shop' }],
      });
      await qemuIo(primary.nbdUri('rep'), ['write -P 0x11 4M 8k', 'flush']);
      const families = await scrape(primary);
      const workload = { volume: 'rep', orchestrator: 'kubernetes', namespace: 'shop', pod: 'web-0', alloc: '', task: '' };
      expect(valueOf(families, 'weft_volume_info', { ...workload, class: 'ssd', node: primary.nodeId, pvc: 'data-web-0', job: '', nomad_job: '' })).toBe(1);
      const writes = valueOf(families, 'weft_volume_operations_total', { volume: 'rep', operation: 'write' });
      expect(writes).toBeGreaterThanOrEqual(2);
      expect(valueOf(families, 'weft_workload_operations_total', { ...workload, operation: 'write' })).toBe(writes);
      expect(valueOf(families, 'weft_workload_bytes_total', { ...workload, direction: 'write' })).toBe(valueOf(families, 'weft_volume_bytes_total', { volume: 'rep', direction: 'write' }));
      expect(valueOf(families, 'weft_workload_operation_seconds_count', { ...workload, operation: 'write' })).toBe(writes);

      // Detached: its workload series are gone at the next scrape.
      await api.removeAttachment('rep', primary.nodeId);
      const after = await scrape(primary);
      expect([...after.values()].flatMap((f) => f.series).filter((s) => s.labels.pod === 'web-0')).toEqual([]);
    } finally {
      api.close();
    }
  });

  it('gives two publications that name no workload (two Mesos tasks) one series, not the same series twice', async () => {
    const api = new WeftClient(`127.0.0.1:${primary.apiPort}`);
    try {
      await api.recordAttachment({
        volume: 'rep', nodeId: primary.nodeId, devicePath: '/dev/loop7', method: 'nbdfuse-loop', stagingPath: '/staging/rep',
        workloads: [{ orchestrator: 'unknown', targetPath: '/mesos/a/target' }, { orchestrator: 'unknown', targetPath: '/mesos/b/target' }],
      });
      const exposition = await (await fetch(`http://127.0.0.1:${primary.metricsPort}/metrics`)).text();
      const info = exposition.split('\n').filter((line) => line.startsWith('weft_volume_info{') && line.includes('orchestrator="unknown"'));
      expect(info).toHaveLength(1);
      const writes = exposition.split('\n').filter((line) => line.startsWith('weft_workload_operations_total{') && line.includes('orchestrator="unknown"') && line.includes('operation="write"'));
      expect(writes).toHaveLength(1);
    } finally {
      await api.removeAttachment('rep', primary.nodeId).catch(() => undefined);
      api.close();
    }
  });

  it('counts the I/O of a pod attached through a node without a copy there, and not again on the primary it forwards to', async () => {
    const forwarder = await startWeftd({ pools: ['none'], extraArgs: ['--store', etcd.storeSpec, '--node-id', 'n3', '--advertise', '127.0.0.1'] });
    const api = new WeftClient(`127.0.0.1:${forwarder.apiPort}`);
    try {
      await api.recordAttachment({
        volume: 'rep', nodeId: forwarder.nodeId, devicePath: '/dev/loop8', method: 'nbdfuse-loop', stagingPath: '/staging/rep',
        workloads: [{ orchestrator: 'kubernetes', podName: 'api-0', podNamespace: 'shop', podUid: 'u-2' }],
      });
      const writesOn = async (node: WeftdHandle) => valueOf(await scrape(node), 'weft_volume_operations_total', { volume: 'rep', operation: 'write' });
      const primaryBefore = await writesOn(primary);
      await qemuIo(forwarder.nbdUri('rep'), ['write -P 0x21 8M 4k', 'write -P 0x22 9M 4k', 'write -P 0x23 10M 4k', 'flush']);
      const families = await scrape(forwarder);
      expect(valueOf(families, 'weft_volume_operations_total', { volume: 'rep', operation: 'write' })).toBe(3);
      expect(valueOf(families, 'weft_volume_bytes_total', { volume: 'rep', direction: 'write' })).toBe(3 * 4096);
      const workload = { volume: 'rep', orchestrator: 'kubernetes', namespace: 'shop', pod: 'api-0', alloc: '', task: '' };
      expect(valueOf(families, 'weft_workload_operations_total', { ...workload, operation: 'write' })).toBe(3);
      expect(valueOf(families, 'weft_volume_info', { ...workload, class: 'ssd', node: 'n3', pvc: '', job: '', nomad_job: '' })).toBe(1);
      expect(await writesOn(primary)).toBe(primaryBefore);
    } finally {
      api.close();
      await forwarder.stop();
    }
  });

  it('drops the series of a deleted volume at the next scrape', async () => {
    expect((await scrape(primary)).get('weft_volume_operations_total')!.series.some((s) => s.labels.volume === 'plain')).toBe(true);
    expect((await primary.weft(['volume', 'delete', 'plain'])).code).toBe(0);
    const families = await scrape(primary);
    const left = [...families.values()].flatMap((family) => family.series).filter((s) => s.labels.volume === 'plain');
    expect(left).toEqual([]);
  });

  it('shows the classes and their objectives with weft class list', async () => {
    const [pool] = await weftJson<{ capacityBytes: number; usedBytes: number; provisionedBytes: number }[]>(primary, ['pool', 'list']);
    const classes = await weftJson(primary, ['class', 'list']);
    expect(classes).toEqual([
      { name: 'hdd', capacityBytes: 0, usedBytes: 0, provisionedBytes: 0, objectives: { availabilityRatio: 0.99 } },
      {
        name: 'ssd',
        capacityBytes: pool.capacityBytes,
        usedBytes: pool.usedBytes,
        provisionedBytes: pool.provisionedBytes,
        objectives: { readLatencyP99Seconds: 0.002, writeLatencyP99Seconds: 0.005, availabilityRatio: 0.999 },
      },
    ]);
    const table = await primary.weft(['class', 'list']);
    expect(table.stdout).toMatch(/^CLASS +CAPACITY +USED +PROVISIONED +READ P99 +WRITE P99 +AVAILABILITY$/m);
    expect(table.stdout).toMatch(/^ssd +\d+ MiB .* 2ms +5ms +99\.9%$/m);
    expect(table.stdout).toMatch(/^hdd +0 B .* - +- +99%$/m);
  });

  it('answers /healthz, and /readyz until the cluster store is gone', async () => {
    const get = (what: string) => fetch(`http://127.0.0.1:${primary.metricsPort}/${what}`);
    expect(await get('healthz').then(async (r) => [r.status, await r.text()])).toEqual([200, 'ok\n']);
    expect(await get('readyz').then(async (r) => [r.status, await r.text()])).toEqual([200, 'engine: ok\nstore: ok\napi: ok\n']);
    expect((await get('nothing')).status).toBe(404);
    await etcd.kill9(0);
    let answer: [number, string] = [0, ''];
    await waitFor(async () => {
      const response = await get('readyz');
      answer = [response.status, await response.text()];
      return answer[0] === 503;
    }, 20_000);
    expect(answer[1]).toMatch(/^engine: ok\nstore: not ready: the cluster store is unreachable: .+\napi: ok\n$/);
    expect((await get('healthz')).status).toBe(200);
  }, 30_000);
});

describe('a weftd under requests and signals it does not expect', () => {
  /** The status line weftd's metrics port answers a raw request with. */
  function statusLine(port: number, request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(request));
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      socket.on('close', () => resolve(answer.split('\r\n')[0]));
      socket.on('error', reject);
    });
  }

  it('answers request targets that are no URL path (//, a bad absolute URL) with 404, and serves on', async () => {
    const node = await startWeftd();
    expect(await statusLine(node.metricsPort, 'GET // HTTP/1.1\r\nHost: weftd\r\nConnection: close\r\n\r\n')).toBe('HTTP/1.1 404 Not Found');
    expect(await statusLine(node.metricsPort, 'GET http://a:b/ HTTP/1.1\r\nHost: weftd\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 (400|404) /);
    expect((await fetch(`http://127.0.0.1:${node.metricsPort}/healthz`)).status).toBe(200);
    expect((await node.weft(['node', 'info'])).code).toBe(0);
  });

  it('ignores SIGHUP, saying so, and serves on', async () => {
    const node = await startWeftd();
    process.kill(node.pid!, 'SIGHUP');
    await waitFor(() => /SIGHUP ignored/.test(node.logs()), 5000, 50);
    expect((await fetch(`http://127.0.0.1:${node.metricsPort}/healthz`)).status).toBe(200);
    expect((await node.weft(['volume', 'create', 'after-hup', '--size', '16MiB'])).code).toBe(0);
  });
});

describe('weftd --metrics-port off', () => {
  it('serves volumes without a metrics port', async () => {
    const node = await startWeftd({ extraArgs: ['--metrics-port', 'off'] });
    expect(node.metricsPort).toBe(0);
    expect((await node.weft(['volume', 'create', 'v', '--size', '16MiB'])).code).toBe(0);
    await qemuIo(node.nbdUri('v'), ['write -P 7 0 64k', 'read -P 7 0 64k']);
    expect((await node.weft(['node', 'info'])).stdout).toMatch(/^Metrics port: +off$/m);
    // It counts no I/O: `weft volume stats` says so rather than show zeros.
    const stats = await node.weft(['volume', 'stats', 'v']);
    expect(stats.code).not.toBe(0);
    expect(stats.stderr).toMatch(/this node counts no I\/O: its weftd runs with --metrics-port off/);
    // A volume that does not exist is told as such all the same (it was "counts no I/O").
    const unknown = await node.weft(['volume', 'stats', 'nope']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/volume nope does not exist/);
  });
});
