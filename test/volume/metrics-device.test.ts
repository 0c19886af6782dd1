// The metrics layer in a real engine volume's stack (as the daemon builds it): it forwards every
// call and counts operations, bytes, errors by kind, in-flight requests and latency per volume,
// in plain numbers (exporters/prometheus turns them into families: test/exporters/prometheus).

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { stackFor } from '../../fabric/daemon';
import { ERROR_KINDS, VolumeMetrics } from '../../fabric/volume/metrics-device';
import type { VolumeEngine } from '../../fabric/volume/types';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openExport } from '../helpers/open-devices';
import { exportNames } from '../../fabric/nbd-exports';

const MiB = 1024 * 1024;

let engine: VolumeEngine;
let metrics: VolumeMetrics;

beforeEach(async () => {
  const dir = makeTempDir('weft-metrics-');
  fs.mkdirSync(path.join(dir, 'pool'));
  metrics = new VolumeMetrics(() => exportNames(engine));
  engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'ssd', path: path.join(dir, 'pool'), sizeBytes: 64 * MiB }],
    logger: pino({ level: 'silent' }),
    stackFor: (replica, ref) => stackFor(replica, ref, metrics),
  });
  await engine.createVolume({ name: 'vol', sizeBytes: 8 * MiB });
});

afterEach(() => engine.close());
afterAll(cleanupAll);

const statsOf = (volume: string) => new Map(metrics.current()).get(volume);

it('forwards I/O and counts it per volume and operation', async () => {
  const device = openExport(engine, 'vol');
  await device.write(0, Buffer.alloc(64 * 1024, 0xab), false);
  await device.flush();
  expect(await device.read(0, 4096)).toEqual(Buffer.alloc(4096, 0xab));
  await device.trim(0, 4096, false);
  await device.writeZeroes(4096, 4096, { fua: false, noHole: false });
  expect((await device.blockStatus(0, 8 * MiB)).length).toBeGreaterThan(0);
  device.close();

  const stats = statsOf('vol')!;
  for (const operation of ['write', 'flush', 'read', 'trim', 'write_zeroes', 'block_status'] as const) {
    expect(stats[operation]).toMatchObject({ operations: 1, errors: 0, inFlight: 0 });
    expect(stats[operation].buckets.reduce((a, b) => a + b)).toBe(1);
  }
  expect(stats.write.bytes).toBe(64 * 1024);
  expect(stats.read.bytes).toBe(4096);
});

it('counts requests in flight until they complete', async () => {
  const device = openExport(engine, 'vol');
  const pending = [device.write(0, Buffer.alloc(4096), false), device.write(MiB, Buffer.alloc(4096), false)];
  expect(statsOf('vol')!.write.inFlight).toBe(2);
  await Promise.all(pending);
  expect(statsOf('vol')!.write.inFlight).toBe(0);
  device.close();
});

it('drops the stats of a deleted volume; a new volume of that name counts from zero', async () => {
  const writeOnce = async () => {
    const opened = openExport(engine, 'vol');
    await opened.write(0, Buffer.alloc(4096), false);
    opened.close();
  };
  await writeOnce();
  expect(statsOf('vol')!.write.operations).toBe(1);
  await engine.deleteVolume('vol');
  expect(statsOf('vol')).toBeUndefined();
  await engine.createVolume({ name: 'vol', sizeBytes: MiB });
  await writeOnce();
  expect(statsOf('vol')!.write.operations).toBe(1);
});

it('counts a failed operation as an error of its kind, without bytes', async () => {
  await engine.createSnapshot('vol', 'snap');
  const device = openExport(engine, 'vol@snap');
  expect(device.readOnly).toBe(true);
  await expect(device.write(0, Buffer.alloc(4096), false)).rejects.toThrow();
  device.close();

  const write = statsOf('vol@snap')!.write;
  expect(write).toMatchObject({ operations: 1, errors: 1, bytes: 0, inFlight: 0 });
  expect(write.errorsByKind[ERROR_KINDS.indexOf('eperm')]).toBe(1);
  expect(write.errorsByKind.reduce((a, b) => a + b)).toBe(1);
});

it('shows the live size of a volume that grows while open', async () => {
  const device = openExport(engine, 'vol');
  await engine.resizeVolume('vol', 16 * MiB);
  expect(device.sizeBytes).toBe(16 * MiB);
  device.close();
});

it('shares the stats of a volume between its devices', () => {
  expect(metrics.forVolume('vol')).toBe(metrics.forVolume('vol'));
});
