// The power-cut layer itself: through the engine's file calls (file-io.ts), a write not synced is
// lost at a simulated power cut, a synced one is kept, and a sync covers only what completed before
// it started.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fdatasync, fsyncSync, pwriteAllSync, pwritevAll } from '../../fabric/store/file-io';
import { FileOpsLayer } from './file-ops-layer';
import { PAGE_BYTES, PowerCutFileOps, simulatePowerCut } from './power-cut-fs';
import { Prng } from './prng';

let dir: string;
let file: string;
let log: string;
/** The layers put in by the test, bottom first. */
let layers: FileOpsLayer[] = [];
let fd: number | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-power-cut-'));
  file = path.join(dir, 'data');
  log = path.join(dir, 'power-cut.log');
});

afterEach(() => {
  for (const layer of layers.reverse()) layer.uninstall();
  layers = [];
  if (fd !== undefined) fs.closeSync(fd);
  fd = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const page = (fill: number) => Buffer.alloc(PAGE_BYTES, fill);

/** A file of `pages` pages filled with 0x11, written before the layer is in: durable. */
function start(pages: number, under?: FileOpsLayer): number {
  fs.writeFileSync(file, Buffer.alloc(pages * PAGE_BYTES, 0x11));
  layers = under ? [under.install()] : [];
  layers.push(new PowerCutFileOps(log).install());
  fd = fs.openSync(file, 'r+');
  return fd;
}

/** The process "dies": the layer goes, the file is closed; then the power cut is applied. */
function cut(rng?: Prng): ReturnType<typeof simulatePowerCut> {
  for (const layer of layers.reverse()) layer.uninstall();
  layers = [];
  fs.closeSync(fd!);
  fd = undefined;
  return simulatePowerCut(log, rng);
}

/** The fill byte of each page of the file (the pages are uniform in these tests). */
function pageFills(): number[] {
  const data = fs.readFileSync(file);
  const fills: number[] = [];
  for (let at = 0; at < data.length; at += PAGE_BYTES) {
    const p = data.subarray(at, at + PAGE_BYTES);
    expect(p.every((b) => b === p[0])).toBe(true); // never torn
    fills.push(p[0]);
  }
  return fills;
}

test('a write not synced is lost; one synced is kept', async () => {
  const fd = start(2);
  pwriteAllSync(fd, page(0x22), 0);
  await fdatasync(fd);
  pwriteAllSync(fd, page(0x33), PAGE_BYTES);
  expect(cut()).toEqual({ files: 1, dirtyPages: 1, droppedPages: 1 });
  expect(pageFills()).toEqual([0x22, 0x11]);
});

test('a page written again after a sync falls back to what that sync made durable', async () => {
  const fd = start(1);
  pwriteAllSync(fd, page(0x22), 0);
  fsyncSync(fd);
  pwriteAllSync(fd, page(0x33), 0);
  pwriteAllSync(fd, page(0x44), 0);
  cut();
  expect(pageFills()).toEqual([0x22]);
});

test('a file grown by writes not synced goes back to its durable length', async () => {
  const fd = start(1);
  await pwritevAll(fd, [page(0x22), page(0x33)], PAGE_BYTES);
  await fdatasync(fd);
  await pwritevAll(fd, [page(0x44), page(0x55)], 3 * PAGE_BYTES);
  cut();
  expect(pageFills()).toEqual([0x11, 0x22, 0x33]);
});

test('a sync does not cover a write still in flight when it started (async writev)', async () => {
  const fd = start(2);
  pwriteAllSync(fd, page(0x22), 0);
  const write = pwritevAll(fd, [page(0x33)], PAGE_BYTES);
  await fdatasync(fd); // started while the writev runs in the thread pool
  await write;
  cut();
  expect(pageFills()).toEqual([0x22, 0x11]);
});

test('a page written while a sync runs keeps as its pre-image the content that sync made durable', async () => {
  const fd = start(1);
  pwriteAllSync(fd, page(0x22), 0);
  const sync = fdatasync(fd);
  pwriteAllSync(fd, page(0x33), 0); // completes while the sync runs
  await sync;
  cut();
  expect(pageFills()).toEqual([0x22]);
});

test('a write that starts while a sync runs and completes after it stays dirty', async () => {
  const fd = start(1);
  const sync = fdatasync(fd);
  const write = pwritevAll(fd, [page(0x22)], 0);
  await Promise.all([sync, write]);
  cut();
  expect(pageFills()).toEqual([0x11]);
});

/** A disk whose every fdatasync fails. */
class FailingSync extends FileOpsLayer {
  override fdatasync(_fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  }
}

test('a failed sync makes nothing durable', async () => {
  const fd = start(1, new FailingSync());
  pwriteAllSync(fd, page(0x22), 0);
  await expect(fdatasync(fd)).rejects.toMatchObject({ code: 'EIO' });
  cut();
  expect(pageFills()).toEqual([0x11]);
});

test('with a seed, each dirty page is kept or lost whole; the same seed gives the same choice', async () => {
  const results: number[][] = [];
  for (let run = 0; run < 2; run++) {
    const fd = start(32);
    for (let p = 0; p < 32; p++) pwriteAllSync(fd, page(0x22), p * PAGE_BYTES);
    expect(cut(new Prng(7)).dirtyPages).toBe(32);
    results.push(pageFills());
    fs.rmSync(file);
  }
  expect(results[0]).toEqual(results[1]);
  expect(results[0]).toContain(0x11);
  expect(results[0]).toContain(0x22);
});
