// Model-based randomized test of the storage engine: seeded random operations run against
// LocalEngine and against a plain in-memory copy of every volume and snapshot; every read, block
// status, verify and space report must agree with the copy. Now and then, for a few steps, metadata
// (sometimes also pool) writes and syncs fail with EIO at random, or with ENOSPC (a full disk): an
// operation that fails then may have left each block it wrote old or new (never torn), a control
// operation that fails must leave nothing behind, and once the faults end, FLUSH works again on old
// and new handles and nothing is lost across close and reopen. A failure names its seed and step;
// WEFT_MODEL_SEED=<n> (and WEFT_MODEL_STEPS=<n>) replays one seed.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { returnBuffer } from '../../fabric/buffers';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { OpenDevice } from '../../fabric/volume/types';
import { controlState, stateDifference } from '../helpers/control-state';
import { FaultyFileOps, isMetadataFile, isPoolFile } from '../helpers/faulty-fs';
import { openExport, OpenDevices } from '../helpers/open-devices';
import { Prng } from '../helpers/prng';
import { overlaps, placeRange, randomWriteRange } from '../helpers/ranges';

const KiB = 1024;
const MiB = 1024 * KiB;
const B = 4096;
/**
 * Two pools: "default" has two members of unequal size, so that some disk runs cross from one to the
 * other; "fast" has one. Volumes and clones are made in either, so chains cross pools.
 */
const MEMBERS: { class: string; sizeBytes: number }[] = [
  { class: 'default', sizeBytes: 40 * MiB },
  { class: 'default', sizeBytes: 24 * MiB },
  { class: 'fast', sizeBytes: 32 * MiB },
];
const CLASSES = ['default', 'fast'];
const NOTHING_USED = CLASSES.map((c) => `${c}:0`).join(' ');
/** Volumes stay small so that random ranges often meet earlier writes, holes and snapshots. */
const MAX_VOLUME_BYTES = 4 * MiB;
/** Volumes plus snapshots, so that the pool does not fill up. */
const MAX_OBJECTS = 12;
/** Writes are skipped when the pool has less than this much room left beyond them. */
const ROOM_MARGIN_BYTES = 2 * MiB;
const HISTORY_STEPS = 30;
const CHECKPOINT_JOURNAL_BYTES = 64 * KiB;

const SEEDS = process.env.WEFT_MODEL_SEED ? [Number(process.env.WEFT_MODEL_SEED)] : [1, 2, 3, 4];
const STEPS = Number(process.env.WEFT_MODEL_STEPS ?? 1500);

const OPERATIONS = {
  write: 24,
  read: 14,
  trim: 5,
  writeZeroes: 5,
  blockStatus: 4,
  concurrent: 8,
  controlsTogether: 3,
  readSnapshot: 6,
  flush: 3,
  createSnapshot: 4,
  snapshotDuringWrites: 2,
  deleteSnapshot: 3,
  clone: 2,
  revert: 2,
  resize: 2,
  createVolume: 2,
  deleteVolume: 1,
  verify: 1,
  readWhole: 2,
  reopen: 0.4,
  faults: 1,
};
/** Steps a fault period lasts. */
const FAULT_PERIOD_STEPS = [1, 5];
type Operation = keyof typeof OPERATIONS;

const logger = pino({ level: 'silent' });

/** Throws with the first differing byte if actual is not exactly expected. */
function expectSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: got ${actual.length} bytes, expected ${expected.length}`);
  if (actual.equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  throw new Error(`${what}: byte ${at} (block ${Math.floor(at / B)} of the range) is ${actual[at]}, expected ${expected[at]}`);
}

/** Waits for every operation, then throws the first failure. */
async function settleAll(operations: Promise<unknown>[]): Promise<void> {
  for (const result of await Promise.allSettled(operations)) if (result.status === 'rejected') throw result.reason;
}

class ModelRun {
  private readonly rng: Prng;
  private engine!: LocalEngine;
  /** The expected contents of every volume, and of every snapshot by its export name VOL@SNAP. */
  private readonly volumes = new Map<string, Buffer>();
  private readonly snapshots = new Map<string, Buffer>();
  private readonly devices = new OpenDevices(() => this.engine);
  private readonly history: string[] = [];
  private nextName = 1;
  private readonly faults: FaultyFileOps;
  /** Steps left in the current fault period (0: none). */
  private faultSteps = 0;

  constructor(readonly seed: number, private readonly dir: string) {
    this.rng = new Prng(seed);
    this.faults = new FaultyFileOps(new Prng(seed ^ 0x5eed));
    MEMBERS.forEach((_member, i) => fs.mkdirSync(this.memberDir(i)));
  }

  private memberDir(index: number): string {
    return path.join(this.dir, `member-${index}`);
  }

  async run(steps: number): Promise<void> {
    this.faults.install();
    await this.openEngine();
    let step = 0;
    try {
      for (; step < steps; step++) await this.step();
      await this.endFaults();
      this.note('final check, then delete everything');
      await this.checkEverything();
      await this.deleteEverything();
      await this.reopen();
      expectEqual(this.usedBytes(), NOTHING_USED, 'pool usedBytes after deleting everything and reopening');
    } catch (err) {
      const recent = this.history.map((h) => `  ${h}`).join('\n');
      throw new Error(
        `model test failed: seed ${this.seed} (WEFT_MODEL_SEED=${this.seed}), step ${step}\nlast operations:\n${recent}\n${(err as Error).stack}`,
      );
    } finally {
      this.faults.heal();
      await this.engine.close().catch(() => undefined);
      this.faults.uninstall();
    }
  }

  private note(text: string): void {
    this.history.push(text);
    if (this.history.length > HISTORY_STEPS) this.history.shift();
  }

  private async step(): Promise<void> {
    if (this.faultSteps > 0 && --this.faultSteps === 0) await this.endFaults();
    const operation = this.rng.weighted(OPERATIONS);
    if (this.volumes.size === 0) return this.createVolume();
    const volume = this.rng.pick([...this.volumes.keys()]);
    await this.perform(operation, volume);
  }

  // ---- injected faults ----

  private async startFaults(): Promise<void> {
    if (this.faults.active) return;
    this.faultSteps = this.rng.int(FAULT_PERIOD_STEPS[0], FAULT_PERIOD_STEPS[1]);
    const withPool = this.rng.chance(0.3);
    this.faults.affects = withPool ? (file) => isMetadataFile(file) || isPoolFile(file) : isMetadataFile;
    if (this.rng.chance(0.5)) this.faults.diskFull = true;
    else this.faults.failureRate = 0.3;
    this.note(`faults on for ${this.faultSteps} steps: ${this.faults.diskFull ? 'disk full (ENOSPC)' : 'EIO at random'}${withPool ? ', pool files too' : ''}`);
  }

  /** The disk is healthy again: FLUSH must work at once, on a handle opened before and on a new one. */
  private async endFaults(): Promise<void> {
    if (!this.faults.active) return;
    this.faults.heal();
    this.faultSteps = 0;
    const volume = [...this.volumes.keys()][0];
    this.note(`faults off; flush ${volume ?? '(no volume)'} on an old and a new handle`);
    if (volume === undefined) return;
    try {
      await this.devices.get(volume).flush();
    } catch (err) {
      // A pool whose fdatasync failed refuses everything until a restart (fail-stop).
      if (!/refuse writes and flushes from now on/.test((err as Error).message)) throw err;
      return this.restartAfterFailStop();
    }
    const fresh = openExport(this.engine, volume);
    try {
      await fresh.flush();
    } finally {
      fresh.close();
    }
  }

  /**
   * Awaits a request that writes data (zeroes for a trim) at offset. If it fails, which only
   * injected faults may cause, each block it touched must hold its old content or the new one, and
   * the model takes what is there; else the model takes the new content.
   */
  private async settleWrite(volume: string, offset: number, data: Buffer, request: Promise<void>): Promise<void> {
    const model = this.volumes.get(volume)!;
    try {
      await request;
    } catch (err) {
      if (!this.faults.active) throw err;
      this.note(`  failed under faults: ${(err as Error).message}`);
      const first = Math.floor(offset / B);
      const end = Math.ceil((offset + data.length) / B);
      const actual = await this.devices.get(volume).read(first * B, (end - first) * B);
      const written = Buffer.from(model.subarray(first * B, end * B));
      data.copy(written, offset - first * B);
      for (let b = 0; b < end - first; b++) {
        const block = actual.subarray(b * B, (b + 1) * B);
        if (block.equals(written.subarray(b * B, (b + 1) * B))) block.copy(model, (first + b) * B);
        else if (!block.equals(model.subarray((first + b) * B, (first + b + 1) * B))) {
          throw new Error(`failed write to ${volume} ${offset}+${data.length}: block ${first + b} holds neither its old nor its new content`);
        }
      }
      returnBuffer(actual);
      return;
    }
    data.copy(model, offset);
  }

  /**
   * Flushes on two handles at once (one of another volume when there is one), as two clients would:
   * the second shares or queues behind the first (group commit), also when that one fails.
   */
  private async flush(volume: string): Promise<void> {
    const other = this.rng.pick([...this.volumes.keys()]);
    this.note(`flush ${volume} and ${other} at once`);
    await settleAll([this.settleFlush(this.devices.get(volume).flush()), this.settleFlush(this.devices.get(other).flush())]);
  }

  /** Awaits a flush; under injected faults it may fail (and then makes nothing durable). */
  private async settleFlush(request: Promise<void>): Promise<void> {
    try {
      await request;
    } catch (err) {
      if (!this.faults.active) throw err;
      this.note(`  flush failed under faults: ${(err as Error).message}`);
    }
  }

  /**
   * Runs a control operation; true if it succeeded. It may fail only under injected faults, and
   * then must leave the catalog exactly as it was.
   */
  private async control(operation: () => Promise<unknown>): Promise<boolean> {
    const before = controlState(this.engine);
    try {
      await operation();
      return true;
    } catch (err) {
      if (!this.faults.active) throw err;
      this.note(`  failed under faults: ${(err as Error).message}`);
      const after = controlState(this.engine);
      if (after !== before) throw new Error(`a failed control operation changed the catalog: ${stateDifference(before, after)}`);
      this.checkCatalog();
      return false;
    }
  }

  private perform(operation: Operation, volume: string): Promise<void> {
    switch (operation) {
      case 'write':
        return this.write(volume);
      case 'read':
        return this.read(volume);
      case 'trim':
        return this.zero(volume, 'trim');
      case 'writeZeroes':
        return this.zero(volume, this.rng.chance(0.5) ? 'zeroes' : 'zeroes-no-hole');
      case 'blockStatus':
        return this.blockStatus(volume);
      case 'concurrent':
        return this.concurrent(volume);
      case 'controlsTogether':
        return this.controlsTogether();
      case 'readSnapshot':
        return this.readSnapshot();
      case 'flush':
        return this.flush(volume);
      case 'createSnapshot':
        return this.createSnapshot(volume);
      case 'snapshotDuringWrites':
        return this.snapshotDuringWrites(volume);
      case 'deleteSnapshot':
        return this.deleteSnapshot();
      case 'clone':
        return this.clone();
      case 'revert':
        return this.revert();
      case 'resize':
        return this.resize(volume);
      case 'createVolume':
        return this.createVolume();
      case 'deleteVolume':
        return this.deleteVolume(volume);
      case 'verify':
        return this.verify(volume);
      case 'readWhole':
        return this.readWhole(volume);
      case 'reopen':
        return this.reopen();
      case 'faults':
        return this.startFaults();
    }
  }

  // ---- random choices ----

  /** A range for a read: up to 512 KiB, so that it spans several earlier writes and holes. */
  private readRange(sizeBytes: number): [number, number] {
    return placeRange(this.rng, sizeBytes, this.rng.chance(0.3) ? this.rng.int(1, 8 * KiB) : this.rng.int(1, 512 * KiB));
  }

  private newSize(atLeast: number): number {
    return Math.max(atLeast, this.rng.int(16, MAX_VOLUME_BYTES / B / 2) * B);
  }

  private name(prefix: string): string {
    return `${prefix}${this.nextName++}`;
  }

  private snapshotsOf(volume: string): string[] {
    return [...this.snapshots.keys()].filter((key) => key.startsWith(`${volume}@`));
  }

  /** Used bytes of every pool, as "class:bytes" (space must be freed in the pool that held it). */
  private usedBytes(): string {
    return this.engine.listPools().map((p) => `${p.class}:${p.usedBytes}`).join(' ');
  }

  /** Room in every pool (a write goes to its volume's pool; which one does not matter here). */
  private hasRoom(bytes: number): boolean {
    return this.engine.listPools().every((pool) => pool.usedBytes + bytes + ROOM_MARGIN_BYTES <= pool.capacityBytes);
  }

  private get objectCount(): number {
    return this.volumes.size + this.snapshots.size;
  }

  // ---- I/O ----

  private async write(volume: string): Promise<void> {
    const model = this.volumes.get(volume)!;
    const [offset, length] = randomWriteRange(this.rng, model.length);
    const fua = this.rng.chance(0.1);
    this.note(`write ${volume} ${offset}+${length} fua=${fua}`);
    if (!this.hasRoom(length)) return this.note('  skipped: pool nearly full');
    const data = this.rng.bytes(length);
    await this.settleWrite(volume, offset, data, this.devices.get(volume).write(offset, data, fua));
    data.fill(0xee); // the caller may reuse its buffer once the write is done
  }

  private async read(volume: string): Promise<void> {
    const [offset, length] = this.readRange(this.volumes.get(volume)!.length);
    this.note(`read ${volume} ${offset}+${length}`);
    await this.readAndCompare(this.devices.get(volume), volume, offset, length);
  }

  /** Reads from an export and compares with the model; the buffer then goes back for reuse, as the NBD server does. */
  private async readAndCompare(device: OpenDevice, exportName: string, offset: number, length: number): Promise<void> {
    const model = exportName.includes('@') ? this.snapshots.get(exportName)! : this.volumes.get(exportName)!;
    const expected = Buffer.from(model.subarray(offset, offset + length));
    const data = await device.read(offset, length);
    expectSameBytes(data, expected, `read ${exportName} ${offset}+${length}`);
    returnBuffer(data);
  }

  private async zero(volume: string, how: 'trim' | 'zeroes' | 'zeroes-no-hole'): Promise<void> {
    const model = this.volumes.get(volume)!;
    const [offset, length] = randomWriteRange(this.rng, model.length);
    const fua = this.rng.chance(0.1);
    this.note(`${how} ${volume} ${offset}+${length} fua=${fua}`);
    if (how === 'zeroes-no-hole' && !this.hasRoom(length)) return this.note('  skipped: pool nearly full');
    await this.settleWrite(volume, offset, Buffer.alloc(length), this.zeroOn(this.devices.get(volume), how, offset, length, fua));
  }

  private zeroOn(device: OpenDevice, how: 'trim' | 'zeroes' | 'zeroes-no-hole', offset: number, length: number, fua: boolean): Promise<void> {
    if (how === 'trim') return device.trim(offset, length, fua);
    return device.writeZeroes(offset, length, { fua, noHole: how === 'zeroes-no-hole' });
  }

  private async blockStatus(volume: string): Promise<void> {
    const model = this.volumes.get(volume)!;
    const [offset, length] = this.readRange(model.length);
    this.note(`blockStatus ${volume} ${offset}+${length}`);
    const extents = await this.devices.get(volume).blockStatus(offset, length);
    let at = offset;
    for (const extent of extents) {
      if (extent.lengthBytes <= 0) throw new Error(`blockStatus ${volume}: empty extent ${JSON.stringify(extents)}`);
      const end = at + extent.lengthBytes;
      if ((extent.hole || extent.zero) && model.subarray(at, end).some((b) => b !== 0)) {
        throw new Error(`blockStatus ${volume}: ${at}+${extent.lengthBytes} is reported ${JSON.stringify(extent)} but holds data`);
      }
      at = end;
    }
    if (at <= offset || at > offset + length) {
      throw new Error(`blockStatus ${volume} ${offset}+${length}: extents cover ${at - offset} bytes: ${JSON.stringify(extents)}`);
    }
  }

  /**
   * Several requests in flight at once on one volume. Writes, trims and zeroes touch disjoint
   * bytes (possibly in the same block; under faults, disjoint blocks, so that a failed one can be
   * told apart), so any order gives the same result; reads overlap each other but no write, so they
   * see the state before the batch.
   */
  private async concurrent(volume: string): Promise<void> {
    const model = this.volumes.get(volume)!;
    const count = this.rng.int(2, 6);
    const changed: [number, number][] = [];
    const read: [number, number][] = [];
    const writes: { offset: number; data: Buffer; request: Promise<void> }[] = [];
    const descriptions: string[] = [];
    const device = this.devices.get(volume);
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const kind = this.rng.weighted({ write: 4, read: 4, trim: 1, zeroes: 1, flush: 1 });
      if (kind === 'flush') {
        descriptions.push('flush');
        requests.push(this.settleFlush(device.flush()));
        continue;
      }
      const [offset, length] = kind === 'read' ? this.readRange(model.length) : randomWriteRange(this.rng, model.length);
      const [blockOffset, blockLength] = [Math.floor(offset / B) * B, Math.ceil((offset + length) / B) * B - Math.floor(offset / B) * B];
      const taken = this.faults.active ? overlaps(changed, blockOffset, blockLength) : overlaps(changed, offset, length);
      if (taken || (kind !== 'read' && overlaps(read, offset, length))) continue;
      if (kind === 'write' && !this.hasRoom(length * count)) continue;
      descriptions.push(`${kind} ${offset}+${length}`);
      if (kind === 'read') {
        read.push([offset, length]);
        requests.push(this.readAndCompare(device, volume, offset, length));
        continue;
      }
      changed.push(this.faults.active ? [blockOffset, blockLength] : [offset, length]);
      const data = kind === 'write' ? this.rng.bytes(length) : Buffer.alloc(length);
      const request =
        kind === 'write'
          ? device.write(offset, data, false)
          : kind === 'trim'
            ? device.trim(offset, length, false)
            : device.writeZeroes(offset, length, { fua: false, noHole: false });
      writes.push({ offset, data, request });
      requests.push(request.catch(() => undefined)); // settled below
    }
    this.note(`concurrent ${volume}: ${descriptions.join(', ')}`);
    await settleAll(requests);
    for (const { offset, data, request } of writes) await this.settleWrite(volume, offset, data, request);
  }

  private async readSnapshot(): Promise<void> {
    if (this.snapshots.size === 0) return;
    const exportName = this.rng.pick([...this.snapshots.keys()]);
    const [offset, length] = this.readRange(this.snapshots.get(exportName)!.length);
    this.note(`read ${exportName} ${offset}+${length}`);
    const device = this.devices.get(exportName);
    await this.readAndCompare(device, exportName, offset, length);
    await expect(device.write(offset, Buffer.alloc(1), false)).rejects.toMatchObject({ errno: 'EPERM' });
  }

  private async readWhole(exportName: string): Promise<void> {
    const model = exportName.includes('@') ? this.snapshots.get(exportName)! : this.volumes.get(exportName)!;
    this.note(`read all of ${exportName}`);
    await this.readAndCompare(this.devices.get(exportName), exportName, 0, model.length);
  }

  // ---- control operations ----

  private async createVolume(): Promise<void> {
    if (this.objectCount >= MAX_OBJECTS) return;
    const name = this.name('v');
    const sizeBytes = this.newSize(B);
    const poolClass = this.rng.pick(CLASSES);
    this.note(`createVolume ${name} ${sizeBytes} in ${poolClass}`);
    if (!(await this.control(() => this.engine.createVolume({ name, sizeBytes, class: poolClass })))) return;
    this.volumes.set(name, Buffer.alloc(sizeBytes));
    this.checkCatalog();
  }

  private async deleteVolume(volume: string): Promise<void> {
    for (const snapshot of this.snapshotsOf(volume)) if (!(await this.deleteSnapshotNamed(snapshot))) return;
    this.note(`deleteVolume ${volume}`);
    this.devices.close(volume);
    if (!(await this.control(() => this.engine.deleteVolume(volume)))) return;
    this.volumes.delete(volume);
    this.checkCatalog();
  }

  private async resize(volume: string): Promise<void> {
    const model = this.volumes.get(volume)!;
    if (model.length >= MAX_VOLUME_BYTES) return;
    const sizeBytes = this.rng.int(model.length / B + 1, MAX_VOLUME_BYTES / B) * B;
    this.note(`resize ${volume} ${model.length} -> ${sizeBytes}`);
    if (!(await this.control(() => this.engine.resizeVolume(volume, sizeBytes)))) return;
    this.volumes.set(volume, Buffer.concat([model, Buffer.alloc(sizeBytes - model.length)]));
    this.checkCatalog();
  }

  private async createSnapshot(volume: string): Promise<void> {
    if (this.objectCount >= MAX_OBJECTS) return;
    const name = this.name('s');
    this.note(`createSnapshot ${volume}@${name}`);
    if (!(await this.control(() => this.engine.createSnapshot(volume, name)))) return;
    this.snapshots.set(`${volume}@${name}`, Buffer.from(this.volumes.get(volume)!));
    this.checkCatalog();
  }

  /**
   * A snapshot taken while writes are in flight: each write is one request, so the snapshot holds
   * all of it or none of it; the volume holds all of them.
   */
  private async snapshotDuringWrites(volume: string): Promise<void> {
    if (this.objectCount >= MAX_OBJECTS) return;
    if (this.faults.active) return this.note('snapshot during writes: skipped under faults');
    const model = this.volumes.get(volume)!;
    const before = Buffer.from(model);
    const device = this.devices.get(volume);
    const ranges: [number, number][] = [];
    const requests: Promise<unknown>[] = [];
    for (let i = this.rng.int(1, 4); i > 0; i--) {
      const [offset, length] = randomWriteRange(this.rng, model.length);
      if (overlaps(ranges, offset, length) || !this.hasRoom(4 * length)) continue;
      ranges.push([offset, length]);
      const data = this.rng.bytes(length);
      requests.push(device.write(offset, data, false));
      data.copy(model, offset);
    }
    const name = this.name('s');
    const exportName = `${volume}@${name}`;
    this.note(`createSnapshot ${exportName} during writes ${ranges.map(([o, l]) => `${o}+${l}`).join(', ')}`);
    requests.push(this.engine.createSnapshot(volume, name));
    await settleAll(requests);
    const actual = await this.devices.get(exportName).read(0, before.length);
    const expected = before;
    for (const [offset, length] of ranges) {
      if (actual.subarray(offset, offset + length).equals(model.subarray(offset, offset + length))) model.copy(expected, offset, offset, offset + length);
    }
    expectSameBytes(actual, expected, `${exportName}: each write all there or not at all`);
    this.snapshots.set(exportName, expected);
    this.checkCatalog();
  }

  /**
   * Control operations on several volumes at once, with writes in flight on yet another: a snapshot
   * of one, a resize of another, and the deletion of some snapshot. Each must come out as if alone.
   */
  private async controlsTogether(): Promise<void> {
    if (this.faults.active || this.objectCount >= MAX_OBJECTS) return;
    const names = this.rng.shuffle([...this.volumes.keys()]);
    if (names.length < 3) return;
    const [snapped, resized, written] = names;
    const snapshotName = this.name('s');
    const grown = this.volumes.get(resized)!;
    const newSize = Math.min(MAX_VOLUME_BYTES, grown.length + this.rng.int(1, 64) * B);
    const doomed = this.snapshots.size > 0 ? this.rng.pick([...this.snapshots.keys()]) : undefined;
    const writes: [number, Buffer][] = [];
    const model = this.volumes.get(written)!;
    for (let i = this.rng.int(1, 4); i > 0; i--) {
      const [offset, length] = randomWriteRange(this.rng, model.length);
      if (!writes.some(([o, d]) => o < offset + length && offset < o + d.length) && this.hasRoom(4 * length)) writes.push([offset, this.rng.bytes(length)]);
    }
    this.note(`together: createSnapshot ${snapped}@${snapshotName}, resize ${resized} -> ${newSize}, ${doomed ? `deleteSnapshot ${doomed}, ` : ''}${writes.length} write(s) on ${written}`);
    if (doomed) this.devices.close(doomed);
    const device = this.devices.get(written);
    const snapshotData = Buffer.from(this.volumes.get(snapped)!);
    await settleAll([
      this.engine.createSnapshot(snapped, snapshotName),
      this.engine.resizeVolume(resized, newSize),
      ...(doomed ? [this.engine.deleteSnapshot(doomed.split('@')[0], doomed.split('@')[1])] : []),
      ...writes.map(([offset, data]) => device.write(offset, data, false)),
    ]);
    this.snapshots.set(`${snapped}@${snapshotName}`, snapshotData);
    this.volumes.set(resized, Buffer.concat([grown, Buffer.alloc(newSize - grown.length)]));
    if (doomed) this.snapshots.delete(doomed);
    for (const [offset, data] of writes) data.copy(model, offset);
    this.checkCatalog();
  }

  private async deleteSnapshot(): Promise<void> {
    if (this.snapshots.size > 0) await this.deleteSnapshotNamed(this.rng.pick([...this.snapshots.keys()]));
  }

  /** Deletes a snapshot; false if that failed (under injected faults). */
  private async deleteSnapshotNamed(exportName: string): Promise<boolean> {
    const [volume, name] = exportName.split('@');
    this.note(`deleteSnapshot ${exportName}`);
    this.devices.close(exportName);
    if (!(await this.control(() => this.engine.deleteSnapshot(volume, name)))) return false;
    this.snapshots.delete(exportName);
    this.checkCatalog();
    return true;
  }

  private async clone(): Promise<void> {
    if (this.snapshots.size === 0 || this.objectCount >= MAX_OBJECTS) return;
    const source = this.rng.pick([...this.snapshots.keys()]);
    const [volume, snapshot] = source.split('@');
    const data = this.snapshots.get(source)!;
    const sizeBytes = this.rng.chance(0.5) ? data.length : this.newSize(data.length);
    const name = this.name('v');
    // Half the time in the snapshot's class, else in a class picked at random (often another).
    const poolClass = this.rng.chance(0.5) ? undefined : this.rng.pick(CLASSES);
    this.note(`clone ${source} -> ${name} ${sizeBytes}${poolClass ? ` in ${poolClass}` : ''}`);
    if (!(await this.control(() => this.engine.cloneVolume({ name, volume, snapshot, sizeBytes, class: poolClass })))) return;
    this.volumes.set(name, Buffer.concat([data, Buffer.alloc(sizeBytes - data.length)]));
    this.checkCatalog();
  }

  private async revert(): Promise<void> {
    if (this.snapshots.size === 0) return;
    const source = this.rng.pick([...this.snapshots.keys()]);
    const [volume, snapshot] = source.split('@');
    this.note(`revert ${volume} to ${source}`);
    this.devices.close(volume);
    if (!(await this.control(() => this.engine.revertVolume(volume, snapshot)))) return;
    this.volumes.set(volume, Buffer.from(this.snapshots.get(source)!));
    this.checkCatalog();
  }

  private async verify(volume: string): Promise<void> {
    this.note(`verify ${volume}`);
    const report = await this.engine.verifyVolume(volume);
    expectEqual(report.badBlockOffsets.length, 0, `verify ${volume}: bad blocks ${report.badBlockOffsets.join(', ')}`);
  }

  /** Close and open again: everything (close flushes) must still be there, and space accounted the same. */
  private async reopen(): Promise<void> {
    await this.endFaults();
    this.note('flush, close and reopen the engine');
    await this.engine.store.flush(); // lets deferred frees go, so that usedBytes is exact
    const used = this.usedBytes();
    this.devices.closeAll();
    await this.engine.close();
    await this.openEngine();
    expectEqual(this.usedBytes(), used, 'pool usedBytes across a restart');
    this.checkCatalog();
    await this.checkEverything();
  }

  /**
   * The engine stopped its pool after a failed sync: close (its final flush fails) and open again;
   * recovery must keep every write that was acknowledged.
   */
  private async restartAfterFailStop(): Promise<void> {
    this.note('  the pool stopped after a failed sync: close (failing) and reopen the engine');
    this.devices.closeAll();
    await this.engine.close().then(
      () => {
        throw new Error('close flushed a pool that had stopped after a failed sync');
      },
      () => undefined,
    );
    await this.openEngine();
    this.checkCatalog();
    await this.checkEverything();
  }

  private async openEngine(): Promise<void> {
    this.engine = await LocalEngine.open({
      dataDir: path.join(this.dir, 'data'),
      pools: MEMBERS.map((member, i) => ({ class: member.class, path: this.memberDir(i), sizeBytes: member.sizeBytes })),
      logger,
      // Small, so that checkpoints are written (while I/O goes on) several times in a run.
      checkpointJournalBytes: CHECKPOINT_JOURNAL_BYTES,
    });
  }

  // ---- whole-state checks ----

  private checkCatalog(): void {
    const volumes = this.engine.listVolumes().map((v) => `${v.name}:${v.sizeBytes}`).sort();
    expectEqual(volumes.join(' '), [...this.volumes].map(([n, d]) => `${n}:${d.length}`).sort().join(' '), 'volumes');
    const snapshots = this.engine.listSnapshots().map((s) => `${s.volume}@${s.name}:${s.sizeBytes}`).sort();
    expectEqual(snapshots.join(' '), [...this.snapshots].map(([n, d]) => `${n}:${d.length}`).sort().join(' '), 'snapshots');
  }

  private async checkEverything(): Promise<void> {
    for (const name of [...this.volumes.keys(), ...this.snapshots.keys()]) await this.readWhole(name);
    for (const name of this.volumes.keys()) await this.verify(name);
  }

  private async deleteEverything(): Promise<void> {
    for (const volume of [...this.volumes.keys()]) await this.deleteVolume(volume);
    expectEqual(this.usedBytes(), NOTHING_USED, 'pool usedBytes after deleting everything');
  }
}

function expectEqual<T>(actual: T, expected: T, what: string): void {
  if (actual !== expected) throw new Error(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

describe('the engine agrees with an in-memory model under random operations', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-model-'));
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each(SEEDS)(`seed %i, ${STEPS} steps`, async (seed) => {
    await new ModelRun(seed, dir).run(STEPS);
  });
});
