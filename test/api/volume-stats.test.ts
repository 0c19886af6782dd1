// VolumeService.VolumeStats over a real engine whose stacks carry the metrics layer (as weftd builds
// them), through a real ApiServer and WeftClient: cumulative counters per operation, latency
// buckets that add up, requests in flight while a write is held below the metrics layer, and the
// refusals (unknown volume or snapshot, malformed name).

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { WeftClient, type WeftApiError } from '../../fabric/api/client';
import type { VolumeCounters } from '../../fabric/api/messages';
import { ApiServer } from '../../fabric/api/server';
import { exportName, exportNames } from '../../fabric/nbd-exports';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { LATENCY_BUCKETS } from '../../fabric/latency';
import { MetricsDevice, VolumeMetrics } from '../../fabric/volume/metrics-device';
import { PassThroughLayer } from '../../fabric/volume/pass-through-device';
import type { Pieces } from '../../fabric/pieces';
import { openExport } from '../helpers/open-devices';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const MiB = 1024 * 1024;

/** Under the metrics layer: writes wait until the test releases them, so they stay in flight. */
class HoldingLayer extends PassThroughLayer {
  holding = false;
  private readonly waiting: (() => void)[] = [];

  override async write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    if (this.holding) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return super.write(offsetBytes, data, fua);
  }

  release(): void {
    this.holding = false;
    for (const resume of this.waiting.splice(0)) resume();
  }
}

let engine: LocalEngine;
let server: ApiServer;
let client: WeftClient;
const holding = new Map<string, HoldingLayer>();

beforeAll(async () => {
  const dir = makeTempDir('weft-stats-');
  fs.mkdirSync(path.join(dir, 'pool'));
  const metrics = new VolumeMetrics(() => exportNames(engine));
  const logger = pino({ level: 'silent' });
  engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'ssd', path: path.join(dir, 'pool'), sizeBytes: 64 * MiB }],
    logger,
    stackFor: (replica, ref) => {
      const layer = new HoldingLayer(replica);
      holding.set(exportName(ref), layer);
      return { top: new MetricsDevice(layer, metrics.forVolume(exportName(ref))), copy: replica };
    },
  });
  const node = { nodeId: 'n1', version: 'test', listenAddress: '127.0.0.1', nbdPort: 0, metricsPort: 0, dataDir: dir, formatVersion: 0, startedAt: new Date() };
  server = new ApiServer({ engine, node, cluster: { listNodes: async () => [], forgetNode: () => Promise.reject(new Error('no cluster here')) }, volumeStats: metrics, logger, shutdownGraceMs: 1000 });
  client = new WeftClient(`127.0.0.1:${await server.listen('127.0.0.1', 0)}`);
  await engine.createVolume({ name: 'busy', sizeBytes: 8 * MiB });
  await engine.createVolume({ name: 'idle', sizeBytes: 8 * MiB });
});

afterAll(async () => {
  client?.close();
  await server?.close();
  await engine?.close();
  await cleanupAll();
});

function operation(volume: VolumeCounters, name: string) {
  const found = volume.operations.find((o) => o.operation === name);
  if (!found) throw new Error(`no ${name} counters in ${JSON.stringify(volume)}`);
  return found;
}

it('counts operations, bytes and latency buckets per operation, cumulatively', async () => {
  const device = openExport(engine, 'busy');
  const before = await client.volumeStats('busy');
  for (let i = 0; i < 5; i++) await device.write(i * 4096, Buffer.alloc(4096, i), false);
  await device.read(0, 8192);
  device.close();
  const after = await client.volumeStats('busy');

  expect(after.latencyBucketBounds).toEqual(LATENCY_BUCKETS);
  expect(after.monotonicSeconds).toBeGreaterThan(before.monotonicSeconds);
  expect(after.volumes.map((v) => v.volume)).toEqual(['busy']);
  const write = operation(after.volumes[0], 'write');
  expect(write).toMatchObject({ count: 5, errors: 0, bytes: 5 * 4096, inFlight: 0 });
  expect(write.bucketCounts).toHaveLength(LATENCY_BUCKETS.length + 1);
  expect(write.bucketCounts.reduce((a, b) => a + b, 0)).toBe(5);
  expect(write.secondsSum).toBeGreaterThan(0);
  expect(operation(after.volumes[0], 'read')).toMatchObject({ count: 1, bytes: 8192 });
  expect(operation(after.volumes[0], 'flush').count).toBe(0);
});

it('counts writes in flight while they wait below the metrics layer', async () => {
  const device = openExport(engine, 'busy');
  const layer = holding.get('busy') as HoldingLayer;
  layer.holding = true;
  const writes = [0, 1, 2].map((i) => device.write(i * 4096, Buffer.alloc(4096, 7), false));
  try {
    const [busy] = (await client.volumeStats('busy')).volumes;
    expect({ write: operation(busy, 'write').inFlight, volume: busy.inFlight }).toEqual({ write: 3, volume: 3 });
  } finally {
    layer.release();
    await Promise.all(writes);
    device.close();
  }
  expect((await client.volumeStats('busy')).volumes[0].inFlight).toBe(0);
});

it('lists every volume with counters when no name is given; an idle one reads as zeros', async () => {
  const all = await client.volumeStats();
  expect(all.volumes.map((v) => v.volume).sort()).toEqual(['busy', 'idle']);
  const idle = all.volumes.find((v) => v.volume === 'idle') as VolumeCounters;
  for (const o of idle.operations) expect(o).toMatchObject({ count: 0, bytes: 0, errors: 0, inFlight: 0, secondsSum: 0 });
});

it('answers for a snapshot as VOL@SNAP, zeros until it is read', async () => {
  await engine.createSnapshot('idle', 's1');
  expect(operation((await client.volumeStats('idle@s1')).volumes[0], 'read').count).toBe(0);
});

it('refuses an unknown volume or snapshot (NOT_FOUND) and a malformed name (INVALID_ARGUMENT)', async () => {
  const refusal = (name: string) => client.volumeStats(name).then(() => undefined, (error: WeftApiError) => ({ code: error.code, message: error.message }));
  expect(await refusal('ghost')).toEqual({ code: 5, message: 'volume ghost does not exist' });
  expect(await refusal('busy@nope')).toEqual({ code: 5, message: 'snapshot busy@nope does not exist' });
  expect(await refusal('bad/name')).toMatchObject({ code: 3 });
});
