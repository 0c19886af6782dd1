// Child process of the crash-model test: runs seeded random operations on the engine (writes,
// trims, zeroes and flushes several at a time, snapshots, clones, deletes, resizes and reverts, in
// two pools, some of them several at once on different volumes while writes are in flight) until
// it is killed, and reports each one on stdout before it starts, once it is acknowledged, or when
// it failed (see crash-ops.ts).
// Usage: crash-model-child DATA_DIR POOL_DIR SEED FIRST_OP_ID [--kill-at OP:TURNS:MICROTASKS]
//   [--kill-in-controls N:TURNS:MICROTASKS] [--kill-after-flush N] [--power-cut-log FILE] [--faults]
// --kill-at: it kills itself with SIGKILL TURNS event-loop turns and then MICROTASKS microtasks
// after starting its OP-th operation: moments that a parent woken by a pipe is too late to hit, such
// as between a write's journal record and its data. --kill-in-controls: as --kill-at, counted from
// the first answer to the N-th batch of several control operations started together, so that the
// kill finds some of them answered and others not, committed or not. --kill-after-flush: at once when its N-th FLUSH
// is answered, while everything that flush claims durable is fresh. --power-cut-log: its file calls
// go through the power-cut layer (power-cut-fs.ts), which logs there what a power cut would lose.
// --faults: now and then, for a few batches, metadata (sometimes also pool) writes and syncs fail
// with EIO at random, or with ENOSPC (a full disk); it reports those periods.

import { parseArgs } from 'util';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { SnapshotInfo, VolumeInfo } from '../../fabric/volume/types';
import { OpenDevices } from './open-devices';
import { controlState, controlStateOf, stateDifference } from './control-state';
import { BLOCK, CLASSES, ControlOp, IoOp, Op, poolSpec, writeData } from './crash-ops';
import { FaultyFileOps, isMetadataFile, isPoolFile } from './faulty-fs';
import { PowerCutFileOps } from './power-cut-fs';
import { Prng } from './prng';
import { overlaps, randomWriteRange } from './ranges';

/** Small volumes, so that random ranges often meet earlier writes and snapshots. */
const MAX_VOLUME_BLOCKS = 512;
/** Volumes plus snapshots, so that the pool never fills up. */
const MAX_OBJECTS = 10;
const IO_KINDS = { write: 10, trim: 1, zeroes: 1, flush: 1, control: 0.5 };
const CONTROL_KINDS = { snapshot: 4, deleteSnapshot: 2, clone: 3, createVolume: 1, deleteVolume: 1, resize: 1, revert: 1 };
/** With --faults: the chance that a fault period starts before a batch, and its length in batches. */
const FAULT_PERIOD_CHANCE = 0.15;
const FAULT_PERIOD_BATCHES = [1, 4];
/** The chance that a batch starts with several control operations at once, and how many. */
const CONTROLS_TOGETHER_CHANCE = 0.2;
const CONTROLS_TOGETHER = [2, 4];

/**
 * What the requests of one batch work on: the volumes and snapshots (VOL@SNAP) its control
 * operations claimed, so that no two of them meet (each must come out as if alone, whichever
 * commits first); how many volumes and snapshots they add; the volumes they disconnect (deleted or
 * reverted: no I/O there); and per volume, the blocks (first, count) that its I/O touches.
 */
interface Batch {
  claimed: Set<string>;
  added: number;
  disconnected: Set<string>;
  touched: Map<string, [number, number][]>;
}

class Workload {
  private readonly devices = new OpenDevices(() => this.engine);
  private startedOps = 0;
  /** Batches that started several control operations together. */
  private controlBatches = 0;
  private flushesDone = 0;
  /** Batches left in the current fault period (0: none). */
  private faultBatches = 0;
  /** The control operations running, each marked once another one ran alongside it. */
  private readonly runningControls = new Set<{ overlapped: boolean }>();

  constructor(
    private readonly engine: LocalEngine,
    private readonly rng: Prng,
    private nextId: number,
    private readonly kill: { atOp?: number; inControls?: number; turns: number; microtasks: number; afterFlush?: number },
    private readonly faults: FaultyFileOps | undefined,
  ) {}

  async run(): Promise<never> {
    for (;;) {
      if (this.faults) this.nextFaultPeriod();
      if (this.engine.listVolumes().length === 0) await this.control(this.createVolume());
      if (this.engine.listVolumes().length === 0) continue; // its create failed
      await this.ioBatch();
      if (this.rng.chance(0.15)) {
        const op = this.controlOp();
        if (op) await this.control(op);
      }
    }
  }

  /**
   * Up to eight requests in flight at once, sometimes after several control operations started
   * together; writes, trims and zeroes never share a block.
   */
  private async ioBatch(): Promise<void> {
    const batch: Batch = { claimed: new Set(), added: 0, disconnected: new Set(), touched: new Map() };
    const requests: Promise<void>[] = [];
    // Many draws find nothing to do (a full catalog, no snapshot to delete): a few tries each.
    const together = this.rng.chance(CONTROLS_TOGETHER_CHANCE) ? this.rng.int(CONTROLS_TOGETHER[0], CONTROLS_TOGETHER[1]) : 0;
    for (let tries = 4 * together; requests.length < together && tries > 0; tries--) {
      const op = this.controlOp(batch);
      if (op) requests.push(this.control(op));
    }
    if (requests.length > 1 && ++this.controlBatches === this.kill.inControls) {
      void Promise.race(requests).then(() => killAfter(this.kill.turns, this.kill.microtasks));
    }
    for (let i = this.rng.int(1, 8); i > 0; i--) {
      const kind = this.rng.weighted(IO_KINDS);
      if (kind === 'flush') {
        requests.push(this.report({ id: this.nextId++, kind }, () => this.engine.store.flush()));
        continue;
      }
      if (kind === 'control') {
        const op = this.controlOp(batch);
        if (op) requests.push(this.control(op));
        continue;
      }
      const volumes = this.engine.listVolumes().filter((v) => !batch.disconnected.has(v.name));
      if (volumes.length === 0) continue;
      const volume = this.rng.pick(volumes);
      const [offset, length] = randomWriteRange(this.rng, volume.sizeBytes);
      const blocks = batch.touched.get(volume.name) ?? [];
      const first = Math.floor(offset / BLOCK);
      const end = Math.ceil((offset + length) / BLOCK);
      if (overlaps(blocks, first, end - first)) continue;
      blocks.push([first, end - first]);
      batch.touched.set(volume.name, blocks);
      const op: IoOp = { id: this.nextId++, kind, volume: volume.name, offset, length, fua: this.rng.chance(0.1) };
      requests.push(this.report(op, () => this.io(op)));
    }
    await Promise.all(requests);
  }

  private io(op: IoOp): Promise<void> {
    const device = this.devices.get(op.volume);
    if (op.kind === 'write') return device.write(op.offset, writeData(op.id, op.offset, op.length), op.fua);
    if (op.kind === 'trim') return device.trim(op.offset, op.length, op.fua);
    return device.writeZeroes(op.offset, op.length, { fua: op.fua, noHole: this.rng.chance(0.5) });
  }

  /**
   * A random control operation. Within a batch: none on what another one claimed, and none that
   * disconnects a volume with I/O in flight.
   */
  private controlOp(batch?: Batch): ControlOp | undefined {
    const free = (name: string) => !batch?.claimed.has(name);
    const volumes = this.engine.listVolumes().filter((v) => free(v.name));
    const idle = volumes.filter((v) => !batch?.touched.has(v.name));
    const snapshots = this.engine.listSnapshots().filter((s) => free(`${s.volume}@${s.name}`));
    const full = this.engine.listVolumes().length + this.engine.listSnapshots().length + (batch?.added ?? 0) >= MAX_OBJECTS;
    const op = this.randomControlOp(volumes, idle, snapshots, full);
    if (op && batch) {
      for (const name of claimsOf(op)) batch.claimed.add(name);
      if (op.kind === 'snapshot' || op.kind === 'clone' || op.kind === 'createVolume') batch.added++;
      if (op.kind === 'deleteVolume' || op.kind === 'revert') batch.disconnected.add(op.kind === 'revert' ? op.volume : op.name);
    }
    return op;
  }

  /** A random control operation on these volumes (disconnecting only idle ones) and snapshots. */
  private randomControlOp(volumes: VolumeInfo[], idle: VolumeInfo[], snapshots: SnapshotInfo[], full: boolean): ControlOp | undefined {
    const id = this.nextId++;
    switch (this.rng.weighted(CONTROL_KINDS)) {
      case 'snapshot':
        return full || volumes.length === 0 ? undefined : { id, kind: 'snapshot', volume: this.rng.pick(volumes).name, name: `s${id}` };
      case 'deleteSnapshot': {
        if (snapshots.length === 0) return undefined;
        const snapshot = this.rng.pick(snapshots);
        return { id, kind: 'deleteSnapshot', volume: snapshot.volume, name: snapshot.name };
      }
      case 'clone': {
        if (full || snapshots.length === 0) return undefined;
        const snapshot = this.rng.pick(snapshots);
        const sizeBytes = Math.max(snapshot.sizeBytes, this.randomSize());
        // In either pool: often another than the snapshot's, so that the chain crosses pools.
        const poolClass = this.rng.pick(CLASSES);
        return { id, kind: 'clone', volume: snapshot.volume, snapshot: snapshot.name, name: `v${id}`, sizeBytes, class: poolClass };
      }
      case 'createVolume':
        return full ? undefined : this.createVolume(id);
      case 'deleteVolume':
        return volumes.length < 2 || idle.length === 0 ? undefined : { id, kind: 'deleteVolume', name: this.rng.pick(idle).name };
      case 'revert': {
        const live = snapshots.filter((s) => idle.some((v) => v.name === s.volume));
        if (live.length === 0) return undefined;
        const snapshot = this.rng.pick(live);
        return { id, kind: 'revert', volume: snapshot.volume, snapshot: snapshot.name };
      }
      case 'resize': {
        if (volumes.length === 0) return undefined;
        const volume = this.rng.pick(volumes);
        const sizeBytes = this.randomSize();
        return sizeBytes > volume.sizeBytes ? { id, kind: 'resize', name: volume.name, sizeBytes } : undefined;
      }
    }
  }

  private createVolume(id = this.nextId++): ControlOp {
    return { id, kind: 'createVolume', name: `v${id}`, sizeBytes: this.randomSize(), class: this.rng.pick(CLASSES) };
  }

  private randomSize(): number {
    return this.rng.int(1, MAX_VOLUME_BLOCKS) * BLOCK;
  }

  /**
   * Starts or ends a fault period between batches, so that every operation runs wholly inside one or
   * outside all: outside, none may fail. Reported as `P on` / `P off`.
   */
  private nextFaultPeriod(): void {
    const faults = this.faults!;
    if (this.faultBatches > 0) {
      if (--this.faultBatches === 0) {
        faults.heal();
        process.stdout.write('P off\n');
      }
      return;
    }
    if (!this.rng.chance(FAULT_PERIOD_CHANCE)) return;
    this.faultBatches = this.rng.int(FAULT_PERIOD_BATCHES[0], FAULT_PERIOD_BATCHES[1]);
    const withPool = this.rng.chance(0.3);
    faults.affects = withPool ? (file) => isMetadataFile(file) || isPoolFile(file) : isMetadataFile;
    if (this.rng.chance(0.5)) faults.diskFull = true;
    else faults.failureRate = 0.3;
    process.stdout.write(`P on ${faults.diskFull ? 'ENOSPC' : 'EIO'}${withPool ? ' with pool' : ''}\n`);
  }

  /**
   * Runs a control operation; one that fails must leave the catalog as it was, or, if others ran
   * alongside it, what it works on (else an `X` line).
   */
  private control(op: ControlOp): Promise<void> {
    return this.report(op, async () => {
      const mine = new Set(claimsOf(op));
      const before = [controlState(this.engine), controlStateOf(this.engine, mine)];
      const running = { overlapped: this.runningControls.size > 0 };
      for (const other of this.runningControls) other.overlapped = true;
      this.runningControls.add(running);
      try {
        await this.runControl(op);
      } catch (err) {
        const [was, is] = running.overlapped ? [before[1], controlStateOf(this.engine, mine)] : [before[0], controlState(this.engine)];
        if (is !== was) process.stdout.write(`X ${op.kind} ${op.id} failed (${(err as Error).message}) but changed the catalog: ${stateDifference(was, is)}\n`);
        throw err;
      } finally {
        this.runningControls.delete(running);
      }
    });
  }

  private async runControl(op: ControlOp): Promise<void> {
    switch (op.kind) {
      case 'createVolume':
        await this.engine.createVolume({ name: op.name, sizeBytes: op.sizeBytes, class: op.class });
        return;
      case 'resize':
        await this.engine.resizeVolume(op.name, op.sizeBytes);
        return;
      case 'deleteVolume':
        this.devices.close(op.name);
        return this.engine.deleteVolume(op.name);
      case 'revert':
        this.devices.close(op.volume);
        await this.engine.revertVolume(op.volume, op.snapshot);
        return;
      case 'snapshot':
        await this.engine.createSnapshot(op.volume, op.name);
        return;
      case 'deleteSnapshot':
        return this.engine.deleteSnapshot(op.volume, op.name);
      case 'clone':
        await this.engine.cloneVolume({ name: op.name, volume: op.volume, snapshot: op.snapshot, sizeBytes: op.sizeBytes, class: op.class });
    }
  }

  /**
   * Reports op, runs it, reports its acknowledgment or its failure (`F id message`). stdout is a
   * pipe, written synchronously on Linux.
   */
  private async report(op: Op, run: () => Promise<void>): Promise<void> {
    process.stdout.write(`S ${JSON.stringify(op)}\n`);
    const running = run();
    if (++this.startedOps === this.kill.atOp) killAfter(this.kill.turns, this.kill.microtasks);
    let failure: string | undefined;
    try {
      await running;
    } catch (err) {
      // A pool whose fdatasync failed refuses everything until a restart (fail-stop): restart it the
      // way the parent checks, by dying; recovery must then find every acknowledged write.
      if (/refuse writes and flushes from now on/.test((err as Error).message)) process.kill(process.pid, 'SIGKILL');
      failure = JSON.stringify((err as Error).message);
    }
    process.stdout.write(failure === undefined ? `A ${op.id}\n` : `F ${op.id} ${failure}\n`);
    // Failed flushes count too, so that the child dies even if flushes keep failing.
    if (op.kind === 'flush' && ++this.flushesDone === this.kill.afterFlush) killAfter(0, 0);
  }
}

/** What a control operation works on or makes: volumes, and snapshots as VOL@SNAP. */
function claimsOf(op: ControlOp): string[] {
  switch (op.kind) {
    case 'createVolume':
    case 'resize':
    case 'deleteVolume':
      return [op.name];
    case 'snapshot':
      return [op.volume, `${op.volume}@${op.name}`];
    case 'deleteSnapshot':
      return [`${op.volume}@${op.name}`];
    case 'clone':
      return [`${op.volume}@${op.snapshot}`, op.name];
    case 'revert':
      return [op.volume, `${op.volume}@${op.snapshot}`];
  }
}

function killAfter(turns: number, microtasks: number): void {
  if (turns > 0) setImmediate(() => killAfter(turns - 1, microtasks));
  else if (microtasks > 0) queueMicrotask(() => killAfter(0, microtasks - 1));
  else process.kill(process.pid, 'SIGKILL');
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      'kill-at': { type: 'string' },
      'kill-in-controls': { type: 'string' },
      'kill-after-flush': { type: 'string' },
      'power-cut-log': { type: 'string' },
      faults: { type: 'boolean' },
    },
  });
  const [dataDir, poolDir, seed, firstId] = positionals;
  if (values['power-cut-log']) new PowerCutFileOps(values['power-cut-log']).install();
  // Above the power-cut layer: a failed call never reaches the disk.
  const faults = values.faults ? new FaultyFileOps(new Prng(Number(seed) ^ 0x5eed)).install() : undefined;
  // A small journal limit: checkpoints are written while I/O goes on, and crashes land in them too.
  const engine = await LocalEngine.open({ dataDir, pools: poolSpec(poolDir), logger: pino({ level: 'silent' }), checkpointJournalBytes: 64 * 1024 });
  const [at, turns, microtasks] = (values['kill-at'] ?? values['kill-in-controls'] ?? '0:0:0').split(':').map(Number);
  const afterFlush = values['kill-after-flush'] ? Number(values['kill-after-flush']) : undefined;
  const kill = { atOp: values['kill-at'] ? at : undefined, inControls: values['kill-in-controls'] ? at : undefined, turns, microtasks, afterFlush };
  await new Workload(engine, new Prng(Number(seed)), Number(firstId), kill, faults).run();
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
