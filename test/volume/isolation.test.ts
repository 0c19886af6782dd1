// Per-volume isolation: a control operation pauses the I/O of its own volume only. A layer under
// the engine's file calls holds a pool write of volume B, or the journal sync of a control
// operation on volume A, at an exact moment; what must not wait for it must finish meanwhile.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { FileOpsLayer } from '../helpers/file-ops-layer';
import { openExport } from '../helpers/open-devices';

const MiB = 1024 * 1024;
/** Above the size the pool writes inline (128 KiB): written on the thread pool, so it can be held. */
const BIG = 256 * 1024;
/** How long a step may take before the test says it waited for the held call (a deadlock, not a speed). */
const WAITED_MS = 10_000;

/** Holds the asynchronous writes and syncs of the files it is told to, until release(). */
class HoldingFileOps extends FileOpsLayer {
  holdWrites: (file: string) => boolean = () => false;
  holdSyncs: (file: string) => boolean = () => false;
  private readonly held: (() => void)[] = [];
  private onHeld: (() => void) | undefined;

  override writev(fd: number, pieces: Parameters<FileOpsLayer['writev']>[1], position: number, done: Parameters<FileOpsLayer['writev']>[3]): void {
    if (!this.holdWrites(fileOf(fd))) return super.writev(fd, pieces, position, done);
    this.hold(() => super.writev(fd, pieces, position, done));
  }

  override fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    if (!this.holdSyncs(fileOf(fd))) return super.fdatasync(fd, done);
    this.hold(() => super.fdatasync(fd, done));
  }

  /** Resolves once a call is being held. */
  heldOne(): Promise<void> {
    if (this.held.length > 0) return Promise.resolve();
    return new Promise((resolve) => (this.onHeld = resolve));
  }

  release(): void {
    this.holdWrites = () => false;
    this.holdSyncs = () => false;
    for (const go of this.held.splice(0)) go();
  }

  private hold(go: () => void): void {
    this.held.push(go);
    this.onHeld?.();
    this.onHeld = undefined;
  }
}

function fileOf(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

/** Fails with a message if the promise has not settled within WAITED_MS. */
async function withoutWaiting<T>(what: string, pending: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} waited for the held call`)), WAITED_MS);
  });
  try {
    return await Promise.race([pending, waited]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether the promise is still pending after the event loop has had a turn. */
async function stillPending(pending: Promise<unknown>): Promise<boolean> {
  let settled = false;
  pending.then(() => (settled = true), () => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  return !settled;
}

let root: string;
let engine: LocalEngine | undefined;
let layer: HoldingFileOps | undefined;

beforeEach(async () => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'weft-isolation-')));
  for (const dir of ['pool-a', 'pool-b']) fs.mkdirSync(path.join(root, dir));
  engine = await LocalEngine.open({
    dataDir: path.join(root, 'data'),
    pools: [
      { class: 'a', path: path.join(root, 'pool-a'), sizeBytes: 32 * MiB },
      { class: 'b', path: path.join(root, 'pool-b'), sizeBytes: 32 * MiB },
    ],
    logger: pino({ level: 'silent' }),
    syncIntervalMs: 0,
  });
  await engine.createVolume({ name: 'A', sizeBytes: 4 * MiB, class: 'a' });
  await engine.createVolume({ name: 'B', sizeBytes: 4 * MiB, class: 'b' });
  layer = new HoldingFileOps().install();
});

afterEach(async () => {
  layer?.release();
  layer?.uninstall();
  layer = undefined;
  await engine?.close();
  engine = undefined;
  fs.rmSync(root, { recursive: true, force: true });
});

test('a write of volume B held in its pool does not delay a snapshot, resize or delete of volume A', async () => {
  const e = engine!;
  const b = openExport(e, 'B');
  layer!.holdWrites = (file) => file.includes('/pool-b/');
  const heldWrite = b.write(0, Buffer.alloc(BIG, 0xbb), false);
  await layer!.heldOne();

  await withoutWaiting('snapshot of A', e.createSnapshot('A', 's1'));
  await withoutWaiting('resize of A', e.resizeVolume('A', 8 * MiB));
  await withoutWaiting('snapshot of A', e.createSnapshot('A', 's2'));
  await withoutWaiting('snapshot delete of A', e.deleteSnapshot('A', 's1'));
  await withoutWaiting('revert of A', e.revertVolume('A', 's2'));
  await withoutWaiting('clone of A@s2', e.cloneVolume({ name: 'C', volume: 'A', snapshot: 's2' }));
  await withoutWaiting('delete of C', e.deleteVolume('C'));
  expect(await stillPending(heldWrite)).toBe(true);

  // A control operation of B itself waits for B's write, and then sees it.
  const snapshotOfB = e.createSnapshot('B', 'b1');
  expect(await stillPending(snapshotOfB)).toBe(true);
  layer!.release();
  await heldWrite;
  await snapshotOfB;
  b.close();
  const snapshot = openExport(e, 'B@b1');
  expect((await snapshot.read(0, BIG)).equals(Buffer.alloc(BIG, 0xbb))).toBe(true);
  snapshot.close();
  expect(e.getVolume('A').sizeBytes).toBe(8 * MiB);
  expect(e.listSnapshots('A').map((s) => s.name)).toEqual(['s2']);
});

test('a control operation of volume A held in its commit does not delay I/O on volume B', async () => {
  const e = engine!;
  const a = openExport(e, 'A');
  await a.write(0, Buffer.alloc(4096, 0xaa), false);
  a.close();
  const b = openExport(e, 'B');
  layer!.holdSyncs = (file) => file.includes('/meta/');
  const snapshotOfA = e.createSnapshot('A', 'held');
  await layer!.heldOne();

  for (let i = 0; i < 16; i++) await withoutWaiting(`write ${i} on B`, b.write(i * 4096, Buffer.alloc(4096, i + 1), false));
  await withoutWaiting('a large write on B', b.write(MiB, Buffer.alloc(BIG, 0x5a), false));
  for (let i = 0; i < 16; i++) expect((await withoutWaiting(`read ${i} on B`, b.read(i * 4096, 4096))).equals(Buffer.alloc(4096, i + 1))).toBe(true);
  await withoutWaiting('a trim on B', b.trim(2 * MiB, MiB, false));
  expect(await stillPending(snapshotOfA)).toBe(true);

  layer!.release();
  await snapshotOfA;
  await b.flush();
  b.close();
  expect(e.listSnapshots('A').map((s) => s.name)).toEqual(['held']);
});
