// Layers over a real engine volume: a layer that extends PassThroughDevice and overrides nothing
// passes every call and question down to the volume; capability answers flow down a stack built
// as the daemon and the NBD exports build it, and a layer that overrides one answer changes only
// that one. Control operations enter at the top of the volume's stack and pass every layer.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { GrowableDevice } from '../../fabric/volume/growable-device';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { stackFor } from '../../fabric/daemon';
import { VolumeMetrics } from '../../fabric/volume/metrics-device';
import { PassThroughDevice, PassThroughLayer } from '../../fabric/volume/pass-through-device';
import type { OpenDevice, VolumeEngine } from '../../fabric/volume/types';
import { openExport } from '../helpers/open-devices';

const MiB = 1024 * 1024;

/** A layer that changes nothing. */
class Bare extends PassThroughDevice {}

/** A stack layer that notes the control operations passing through it (where replication will order them). */
class ControlLog extends PassThroughLayer {
  static readonly seen: string[] = [];

  override snapshot(name: string): Promise<void> {
    ControlLog.seen.push(`snapshot ${name}`);
    return super.snapshot(name);
  }

  override resize(sizeBytes: number): Promise<void> {
    ControlLog.seen.push(`resize ${sizeBytes}`);
    return super.resize(sizeBytes);
  }

  override revert(snapshot: string): Promise<void> {
    ControlLog.seen.push(`revert ${snapshot}`);
    return super.revert(snapshot);
  }
}

/** A layer that takes trim away, and nothing else. */
class NoTrim extends PassThroughDevice {
  override canTrim(): boolean {
    return false;
  }
}

let dir: string;
let engine: VolumeEngine;
const opened: OpenDevice[] = [];

function open(exportName: string): OpenDevice {
  const device = openExport(engine, exportName);
  opened.push(device);
  return device;
}

function answers(device: BlockDevice): Record<string, boolean> {
  return {
    readOnly: device.readOnly,
    canMultiConn: device.canMultiConn(),
    canFua: device.canFua(),
    canTrim: device.canTrim(),
    canZero: device.canZero(),
    canFastZero: device.canFastZero(),
  };
}

/** What fabric/nbd-exports.ts serves for VOL~growable over a handle, with one more layer at the top or in the middle. */
function exportStack(handle: BlockDevice, layer?: (device: BlockDevice) => BlockDevice, where: 'top' | 'middle' = 'top'): BlockDevice {
  const wrap = layer ?? ((device: BlockDevice) => device);
  return where === 'top' ? wrap(new GrowableDevice(handle)) : new GrowableDevice(wrap(handle));
}

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-layers-'));
  const metrics = new VolumeMetrics();
  ControlLog.seen.length = 0;
  engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'default', path: dir, sizeBytes: 64 * MiB }],
    logger: pino({ level: 'silent' }),
    // The daemon's stack (metrics over the local replica), with the log on top.
    stackFor: (replica, ref) => {
      const stack = stackFor(replica, ref, metrics);
      return { ...stack, top: new ControlLog(stack.top) };
    },
  });
  await engine.createVolume({ name: 'vol', sizeBytes: 4 * MiB });
});

afterEach(async () => {
  for (const device of opened.splice(0)) device.close();
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a layer that overrides nothing passes every call to the volume below', async () => {
  const layer = new Bare(open('vol'));
  const direct = open('vol');
  expect([layer.sizeBytes, layer.readOnly]).toEqual([4 * MiB, false]);

  await layer.write(0, Buffer.alloc(3 * 4096, 0xab), false);
  await layer.writeZeroes(4096, 4096, { fua: false, noHole: true });
  await layer.write(MiB, Buffer.alloc(64 * 1024, 0xcd), true);
  await layer.trim(MiB, 64 * 1024, false);
  await layer.flush();

  const expected = Buffer.concat([Buffer.alloc(4096, 0xab), Buffer.alloc(4096), Buffer.alloc(4096, 0xab)]);
  expect((await direct.read(0, 3 * 4096)).equals(expected)).toBe(true);
  expect((await layer.read(0, 3 * 4096)).equals(expected)).toBe(true);
  expect((await direct.read(MiB, 64 * 1024)).every((b) => b === 0)).toBe(true);
  expect(await layer.blockStatus(0, 2 * MiB)).toEqual(await direct.blockStatus(0, 2 * MiB));
  expect(await layer.blockStatus(MiB, 64 * 1024)).toEqual([{ lengthBytes: 64 * 1024, hole: true, zero: true }]);

  await engine.resizeVolume('vol', 8 * MiB);
  expect(layer.sizeBytes).toBe(8 * MiB);
});

test('capabilities: a volume and a snapshot answer for themselves, through every layer of the export stack', async () => {
  await engine.createSnapshot('vol', 'snap');
  const volume = { readOnly: false, canMultiConn: true, canFua: true, canTrim: true, canZero: true, canFastZero: false };
  const snapshot = { readOnly: true, canMultiConn: true, canFua: false, canTrim: false, canZero: false, canFastZero: false };
  expect(answers(open('vol'))).toEqual(volume);
  expect(answers(new Bare(open('vol')))).toEqual(volume);
  expect(answers(exportStack(open('vol')))).toEqual(volume);
  expect(answers(open('vol@snap'))).toEqual(snapshot);
  expect(answers(exportStack(open('vol@snap')))).toEqual(snapshot);
});

test('a layer that overrides one answer changes that one only, at the top of the stack or below other layers', async () => {
  const withoutTrim = { readOnly: false, canMultiConn: true, canFua: true, canTrim: false, canZero: true, canFastZero: false };
  const noTrim = (device: BlockDevice) => new NoTrim(device);
  expect(answers(exportStack(open('vol'), noTrim, 'top'))).toEqual(withoutTrim);
  expect(answers(exportStack(open('vol'), noTrim, 'middle'))).toEqual(withoutTrim);
});

test('control operations enter at the top of the volume stack, pass every layer, and do what they say', async () => {
  const device = open('vol');
  await device.write(0, Buffer.alloc(4096, 0x11), false);
  await engine.createSnapshot('vol', 'one');
  await device.write(0, Buffer.alloc(4096, 0x22), false);
  await engine.resizeVolume('vol', 8 * MiB);
  expect(device.sizeBytes).toBe(8 * MiB);
  device.close();
  opened.splice(opened.indexOf(device), 1);
  await engine.revertVolume('vol', 'one');
  expect(ControlLog.seen).toEqual(['snapshot one', `resize ${8 * MiB}`, 'revert one']);
  expect((await open('vol').read(0, 4096)).equals(Buffer.alloc(4096, 0x11))).toBe(true);
  expect(engine.getVolume('vol').sizeBytes).toBe(4 * MiB);
  // Refused operations change nothing, whichever layer they pass.
  await expect(engine.createSnapshot('vol', 'one')).rejects.toMatchObject({ kind: 'ALREADY_EXISTS' });
  await expect(engine.resizeVolume('vol', MiB)).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
  await expect(engine.createSnapshot('absent', 'x')).rejects.toMatchObject({ kind: 'NOT_FOUND' });
  expect(engine.listSnapshots('vol').map((s) => s.name)).toEqual(['one']);
});
