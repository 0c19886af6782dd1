// The metrics layer in a real engine volume's stack (as the daemon builds it): it forwards every
// call, counts operations, bytes, errors and latency per volume, and its exposition passes
// `promtool check metrics`.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { stackFor } from '../../fabric/daemon';
import { registerPoolGauges, VolumeMetrics } from '../../fabric/volume/metrics-device';
import type { VolumeEngine } from '../../fabric/volume/types';
import { cleanupAll, makeTempDir, run } from '../helpers/weftd';
import { openExport } from '../helpers/open-devices';
import { exportNames } from '../../fabric/nbd-exports';

const MiB = 1024 * 1024;

let engine: VolumeEngine;
let registry: Registry;
let metrics: VolumeMetrics;

beforeEach(async () => {
  const dir = makeTempDir('weft-metrics-');
  fs.mkdirSync(path.join(dir, 'pool'));
  registry = new Registry();
  metrics = new VolumeMetrics(registry, () => exportNames(engine));
  engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'ssd', path: path.join(dir, 'pool'), sizeBytes: 64 * MiB }],
    logger: pino({ level: 'silent' }),
    stackFor: (replica, ref) => stackFor(replica, ref, metrics),
  });
  await engine.createVolume({ name: 'vol', sizeBytes: 8 * MiB });
  registerPoolGauges(registry, engine);
});

afterEach(() => engine.close());
afterAll(cleanupAll);

function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

it('forwards I/O and counts it per volume and operation', async () => {
  const device = openExport(engine, 'vol');
  await device.write(0, Buffer.alloc(64 * 1024, 0xab), false);
  await device.flush();
  expect(await device.read(0, 4096)).toEqual(Buffer.alloc(4096, 0xab));
  await device.trim(0, 4096, false);
  await device.writeZeroes(4096, 4096, { fua: false, noHole: false });
  expect((await device.blockStatus(0, 8 * MiB)).length).toBeGreaterThan(0);
  device.close();

  const text = await registry.metrics();
  for (const operation of ['write', 'flush', 'read', 'trim', 'write_zeroes', 'block_status']) {
    expect(sample(text, `weft_volume_operations_total{volume="vol",operation="${operation}"}`)).toBe(1);
    expect(sample(text, `weft_volume_operation_seconds_count{volume="vol",operation="${operation}"}`)).toBe(1);
    expect(sample(text, `weft_volume_errors_total{volume="vol",operation="${operation}"}`)).toBe(0);
  }
  expect(sample(text, 'weft_volume_bytes_total{volume="vol",direction="write"}')).toBe(64 * 1024);
  expect(sample(text, 'weft_volume_bytes_total{volume="vol",direction="read"}')).toBe(4096);
  expect(sample(text, 'weft_pool_capacity_bytes{class="ssd"}')).toBeGreaterThan(0);
  expect(sample(text, 'weft_pool_provisioned_bytes{class="ssd"}')).toBe(8 * MiB);
});

it('drops the series of a deleted volume; a new volume of that name counts from zero', async () => {
  const count = async () => sample(await registry.metrics(), 'weft_volume_operations_total{volume="vol",operation="write"}');
  const writeOnce = async () => {
    const opened = openExport(engine, 'vol');
    await opened.write(0, Buffer.alloc(4096), false);
    opened.close();
  };
  await writeOnce();
  expect(await count()).toBe(1);
  await engine.deleteVolume('vol');
  expect(await count()).toBeUndefined();
  await engine.createVolume({ name: 'vol', sizeBytes: MiB });
  await writeOnce();
  expect(await count()).toBe(1);
});

it('counts a failed operation as an error, without bytes', async () => {
  await engine.createSnapshot('vol', 'snap');
  const device = openExport(engine, 'vol@snap');
  expect(device.readOnly).toBe(true);
  await expect(device.write(0, Buffer.alloc(4096), false)).rejects.toThrow();
  device.close();

  const text = await registry.metrics();
  expect(sample(text, 'weft_volume_operations_total{volume="vol@snap",operation="write"}')).toBe(1);
  expect(sample(text, 'weft_volume_errors_total{volume="vol@snap",operation="write"}')).toBe(1);
  expect(sample(text, 'weft_volume_bytes_total{volume="vol@snap",direction="write"}')).toBe(0);
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

it('writes an exposition that promtool accepts', async () => {
  const opened = openExport(engine, 'vol');
  await opened.read(0, 4096);
  opened.close();
  const checked = await run('promtool', ['check', 'metrics'], { input: await registry.metrics() });
  expect(checked).toMatchObject({ code: 0, stderr: '' });
});
