// kill -9 at random moments of a seeded random workload (writes of every size and alignment, trims,
// zeroes, flushes and FUA, several in flight, snapshots, clones, deletes, resizes, reverts, several
// of them at once on different volumes, in two pools with clones across them), in most rounds
// followed by a simulated power cut (power-cut-fs.ts: every write not synced is lost, or a random part
// of them), then recovery is checked against a model of what may have survived: every write a FLUSH
// (or FUA) made durable reads back, no block is torn or fails its checksum, the catalog holds every
// acknowledged control operation (one in flight is there whole or not at all), and each pool uses
// exactly the blocks the maps of its layers reference. A second test injects metadata (and pool)
// write and sync failures and a full disk into the workload (faulty-fs.ts): a failed operation is
// not acknowledged, a failed control operation must leave nothing behind, and no operation may fail
// once the faults end. WEFT_CRASH_SEED=<n> replays one seed (the kill moments are seeded too, but how
// far the child got by then is not).

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess, spawn } from 'child_process';
import pino from 'pino';
import * as fileIo from '../../fabric/store/file-io';
import { FIRST_PHYSICAL } from '../../fabric/volume/block-map';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { Metadata } from '../../fabric/volume/metadata';
import { BLOCK, ControlOp, poolSpec } from '../helpers/crash-ops';
import { CrashModel } from '../helpers/crash-model';
import { simulatePowerCut } from '../helpers/power-cut-fs';
import { Prng } from '../helpers/prng';
import { openExport } from '../helpers/open-devices';

const CHILD = path.join(__dirname, '..', 'helpers', 'crash-model-child.js');
const SEEDS = process.env.WEFT_CRASH_SEED ? [Number(process.env.WEFT_CRASH_SEED)] : [1, 2, 3];
const FAULT_SEEDS = process.env.WEFT_CRASH_SEED ? [Number(process.env.WEFT_CRASH_SEED)] : [1, 2];
const ROUNDS = 12;
/** Fewer with faults: a round there spends much of its time in fault periods, and the suite must stay short. */
const FAULT_ROUNDS = 6;
/** After the kill: the page cache survives (kill -9 only), or a power cut loses all or part of it. */
const POWER_CUTS = { none: 1, all: 1, some: 2 };
/** Op ids of round r start at r * OPS_PER_ROUND, so that every write's stamp is unique. */
const OPS_PER_ROUND = 1_000_000;

let dir: string;
let child: ChildProcess | undefined;

/**
 * On tmpfs where there is one: the power-cut layer decides what a crash loses, so the real disk's
 * syncs only cost time (they are most of a round's time on a disk).
 */
const TEST_ROOT = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(TEST_ROOT, 'weft-crash-model-'));
});

afterEach(async () => {
  jest.restoreAllMocks();
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child!.once('close', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  child = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

function openEngine(): Promise<LocalEngine> {
  return LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: poolSpec(dir), logger: pino({ level: 'silent' }) });
}

/**
 * When a round's child dies: it kills itself a few event-loop turns after starting an operation or
 * several control operations, or as a FLUSH is answered (args for the child), or the parent kills it a few milliseconds after
 * it printed some lines.
 */
type KillPlan = { childArgs: string[] } | { afterLines: number; delayMs: number };

function randomKillPlan(rng: Prng): KillPlan {
  const kind = rng.weighted({ atOp: 4, inControls: 2, afterFlush: 3, afterLines: 3 });
  if (kind === 'atOp') return { childArgs: ['--kill-at', `${rng.int(10, 300)}:${rng.int(0, 2)}:${rng.int(0, 20)}`] };
  if (kind === 'inControls') return { childArgs: ['--kill-in-controls', `${rng.int(1, 3)}:${rng.int(0, 2)}:${rng.int(0, 20)}`] };
  if (kind === 'afterFlush') return { childArgs: ['--kill-after-flush', String(rng.int(1, 20))] };
  return { afterLines: rng.int(20, 600), delayMs: rng.int(0, 5) };
}

function powerCutLog(): string {
  return path.join(dir, 'power-cut.log');
}

/**
 * Runs the child until SIGKILL ends it as planned, feeding every complete line it prints to the
 * model. A line cut by the kill is ignored.
 */
function runUntilKilled(model: CrashModel, seed: number, firstId: number, plan: KillPlan, options: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = [CHILD, path.join(dir, 'data'), dir, String(seed), String(firstId), ...('childArgs' in plan ? plan.childArgs : []), ...options];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let pending = '';
    let lines = 0;
    let stderr = '';
    let failure: Error | undefined;
    proc.stderr!.on('data', (d) => (stderr += d));
    proc.stdout!.on('data', (d: Buffer) => {
      const parts = (pending + d.toString()).split('\n');
      pending = parts.pop()!;
      for (const line of parts) {
        try {
          model.onLine(line);
        } catch (err) {
          failure ??= err as Error;
        }
        if ('afterLines' in plan && ++lines === plan.afterLines) setTimeout(() => proc.kill('SIGKILL'), plan.delayMs);
      }
    });
    proc.on('close', (_code, signal) => {
      if (failure) reject(failure);
      else if (signal !== 'SIGKILL') reject(new Error(`child exited on its own: ${stderr}`));
      else resolve();
    });
  });
}

/** Whether a control operation the child started before the kill is in the recovered catalog. */
function happened(engine: LocalEngine, op: ControlOp): boolean {
  const volume = (name: string) => engine.listVolumes().find((v) => v.name === name);
  const snapshot = (v: string, name: string) => engine.listSnapshots().some((s) => s.volume === v && s.name === name);
  switch (op.kind) {
    case 'createVolume':
    case 'clone':
      return volume(op.name) !== undefined;
    case 'resize':
      return volume(op.name)?.sizeBytes === op.sizeBytes; // the volume may be gone: a delete whose cancel was not written
    case 'deleteVolume':
      return volume(op.name) === undefined;
    case 'snapshot':
      return snapshot(op.volume, op.name);
    case 'deleteSnapshot':
      return !snapshot(op.volume, op.name);
    case 'revert':
      return revertedTo(engine, op.volume, op.snapshot);
  }
}

/**
 * Whether the volume reads as the snapshot, as after a revert: an empty head over the snapshot's
 * layer, at the snapshot's size (if the revert did not happen, such a volume holds the same anyway).
 */
function revertedTo(engine: LocalEngine, volume: string, snapshot: string): boolean {
  const catalog = engine.metadata.catalog;
  const record = catalog.volumes.find((v) => v.name === volume);
  const frozen = catalog.snapshots.find((s) => s.volume === volume && s.name === snapshot);
  if (!record || !frozen) return false; // gone with a delete whose cancel was not written
  const head = catalog.layers.find((l) => l.id === record.head)!;
  return head.parent === frozen.layer && engine.metadata.mapOf(head.id).size === 0 && record.sizeBytes === frozen.sizeBytes;
}

/** Every volume and snapshot at its size, every volume in its pool. */
function checkCatalog(engine: LocalEngine, model: CrashModel): void {
  const actual = [
    ...engine.listVolumes().map((v) => `${v.name}:${v.sizeBytes}:${v.class}`),
    ...engine.listSnapshots().map((s) => `${s.volume}@${s.name}:${s.sizeBytes}`),
  ].sort();
  const expected = [...model.exports].map(([name, blocks]) => [name, blocks.length * BLOCK, ...(model.classes.has(name) ? [model.classes.get(name)] : [])].join(':')).sort();
  expect(actual).toEqual(expected);
}

/** Reads every block of every export (a checksum error rejects) and checks it against the model. */
async function checkContents(engine: LocalEngine, model: CrashModel): Promise<Map<string, Buffer>> {
  const contents = new Map<string, Buffer>();
  const problems: string[] = [];
  for (const [name, blocks] of model.exports) {
    const device = openExport(engine, name);
    try {
      const data = Buffer.from(await device.read(0, blocks.length * BLOCK));
      contents.set(name, data);
      for (let b = 0; b < blocks.length; b++) {
        const problem = model.disallowed(name, b, data.subarray(b * BLOCK, (b + 1) * BLOCK));
        if (problem) problems.push(problem);
      }
    } finally {
      device.close();
    }
  }
  for (const volume of engine.listVolumes()) {
    const report = await engine.verifyVolume(volume.name);
    if (report.badBlockOffsets.length > 0) problems.push(`verify ${volume.name}: bad blocks at ${report.badBlockOffsets.join(', ')}`);
  }
  expect(problems.slice(0, 20)).toEqual([]);
  return contents;
}

/**
 * No space leaks: every layer the catalog lists is reachable from a volume or snapshot (a deleted
 * snapshot stays as a hidden layer while a clone or the volume still stands on it), and each pool
 * uses exactly the physical blocks that the reachable layers in it reference (the engine rebuilds
 * each pool's free space from the maps of the layers it lists in that pool).
 */
function checkSpace(engine: LocalEngine): void {
  const catalog = engine.metadata.catalog;
  const reachable = new Set<number>();
  const heads = [...catalog.volumes.map((v) => v.head), ...catalog.snapshots.map((s) => s.layer)];
  for (const id of heads) {
    let layer = catalog.layers.find((l) => l.id === id);
    while (layer && !reachable.has(layer.id)) {
      reachable.add(layer.id);
      const parent = layer.parent;
      layer = catalog.layers.find((l) => l.id === parent);
    }
  }
  expect(catalog.layers.filter((l) => !reachable.has(l.id)).map((l) => l.id)).toEqual([]);
  const referenced = new Map(engine.listPools().map((p) => [p.class, 0]));
  for (const layer of catalog.layers) {
    engine.metadata.mapOf(layer.id).forEach((_block, value) => {
      if (value >= FIRST_PHYSICAL) referenced.set(layer.pool, referenced.get(layer.pool)! + BLOCK);
    });
  }
  expect(engine.listPools().map((p) => `${p.class}:${p.usedBytes}`)).toEqual([...referenced].map(([c, bytes]) => `${c}:${bytes}`));
}

/** Opens the engine in this process as a restarted weftd would and checks everything against the model. */
async function recoverAndCheck(model: CrashModel): Promise<void> {
  const engine = await openEngine();
  try {
    for (const op of model.pendingControls()) if (happened(engine, op)) model.apply(op);
    checkCatalog(engine, model);
    model.reset(await checkContents(engine, model));
    checkSpace(engine);
  } finally {
    await engine.close();
  }
}

/** At the end, deleting everything must give all space back. */
async function deleteEverything(): Promise<void> {
  const engine = await openEngine();
  try {
    for (const s of engine.listSnapshots()) await engine.deleteSnapshot(s.volume, s.name);
    for (const v of engine.listVolumes()) await engine.deleteVolume(v.name);
    expect(engine.listPools().map((p) => p.usedBytes)).toEqual([0, 0]);
  } finally {
    await engine.close();
  }
}

/**
 * Rounds of: run the child until it is killed, maybe cut the power, recover and check. With faults,
 * the child injects write and sync failures now and then.
 */
async function crashRounds(seed: number, rounds: number, faults: boolean): Promise<void> {
  const rng = new Prng(seed);
  const model = new CrashModel();
  for (let round = 1; round <= rounds; round++) {
    const kill = randomKillPlan(rng);
    const cut = rng.weighted(POWER_CUTS);
    const options = [...(cut === 'none' ? [] : ['--power-cut-log', powerCutLog()]), ...(faults ? ['--faults'] : [])];
    const where = `seed ${seed} (WEFT_CRASH_SEED=${seed}), round ${round} (${JSON.stringify(kill)}, power cut: ${cut})`;
    try {
      await runUntilKilled(model, seed * 1000 + round, round * OPS_PER_ROUND, kill, options);
      if (cut !== 'none') simulatePowerCut(powerCutLog(), cut === 'some' ? new Prng(seed * 1000 + round) : undefined);
      await recoverAndCheck(model);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
  }
  await deleteEverything();
}

test.each(SEEDS)('seed %i: recovery after kill -9 and a power cut keeps every durable write and a consistent pool', async (seed) => {
  await crashRounds(seed, ROUNDS, false);
});

test.each(FAULT_SEEDS)('seed %i: with metadata write and sync failures and a full disk, a failed operation leaves nothing wrong behind', async (seed) => {
  await crashRounds(seed, FAULT_ROUNDS, true);
});

/**
 * Recovery keeps the writes whose data reached the page cache before the kill; a power loss after
 * its checkpoint (which drops the journal) must not lose that data, or those blocks would fail their
 * checksum with nothing left to roll them back to.
 */
test('after kill -9, recovery syncs the pool files before its checkpoint drops the journal', async () => {
  await runUntilKilled(new CrashModel(), 1, OPS_PER_ROUND, { childArgs: ['--kill-at', '20:0:0'] });
  const sync = jest.spyOn(fileIo, 'fdatasync');
  const checkpoint = jest.spyOn(Metadata.prototype, 'checkpoint');
  const engine = await openEngine();
  await engine.close();
  expect(sync).toHaveBeenCalled();
  expect(sync.mock.invocationCallOrder[0]).toBeLessThan(checkpoint.mock.invocationCallOrder[0]);
});
