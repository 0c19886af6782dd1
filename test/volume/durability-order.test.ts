// What reaches the disk, and in which order, for the durability promises a kill -9 test cannot
// check (kill -9 keeps the page cache). A layer under the engine's file calls records every write
// and sync and holds a pool write or a journal sync at an exact moment; a copy of the data dir taken
// then is the disk as a crash at that moment leaves it, and recovery runs on the copy.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { NbdServer } from '../../fabric/nbd/server';
import { EngineExports, GROWABLE_SUFFIX } from '../../fabric/nbd-exports';
import { setFileOps, type FileOps } from '../../fabric/store/file-io';
import { DATA_OFFSET_BYTES, memberFileInDirectory } from '../../fabric/store/pool-member';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { OpenDevice } from '../../fabric/volume/types';
import { FileOpsRecorder, type FileCall } from '../helpers/file-ops-recorder';
import { CMD_FLAG, RawNbdClient } from '../helpers/nbd-raw-client';
import { openExport } from '../helpers/open-devices';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;
/** Above the size the pool writes inline (128 KiB): written on the thread pool, so it can be held. */
const BIG = 256 * KiB;
const OLD = 0x0d;
const NEW = 0x4e;
/** A write the pool does on the thread pool, and one it does inline. */
const WRITE_SIZES: [string, number][] = [
  ['256 KiB', BIG],
  ['4 KiB', BLOCK],
];
const logger = pino({ level: 'silent' });

let root: string;
let recorder: FileOpsRecorder | undefined;
const engines: LocalEngine[] = [];
const devices: OpenDevice[] = [];
const servers: NbdServer[] = [];
const clients: RawNbdClient[] = [];
/** Requests left running when a test ends (held ones included): awaited before the engines close. */
const pending: Promise<unknown>[] = [];

beforeEach(() => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'weft-durability-')));
});

afterEach(async () => {
  recorder?.uninstall();
  recorder = undefined;
  await Promise.allSettled(pending.splice(0));
  for (const client of clients.splice(0)) client.destroy();
  for (const server of servers.splice(0)) await server.close();
  for (const device of devices.splice(0)) device.close();
  for (const engine of engines.splice(0)) await engine.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** An engine on dir/data with its pool in dir/pool; syncs only on FLUSH and FUA (no timer). */
async function openEngine(dir: string, poolBytes = 16 * MiB, log = logger): Promise<LocalEngine> {
  fs.mkdirSync(path.join(dir, 'pool'), { recursive: true });
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'default', path: path.join(dir, 'pool'), sizeBytes: poolBytes }],
    logger: log,
    syncIntervalMs: 0,
  });
  engines.push(engine);
  return engine;
}

async function volume(engine: LocalEngine, name: string, sizeBytes: number): Promise<OpenDevice> {
  await engine.createVolume({ name, sizeBytes });
  const device = openExport(engine, name);
  devices.push(device);
  return device;
}

/** A new engine on root with volume v (1 MiB), open. */
async function volumeV(): Promise<OpenDevice> {
  return volume(await openEngine(root), 'v', MiB);
}

/** The pool file of the engine under test (not of a crash copy). */
function poolFile(): string {
  return memberFileInDirectory(path.join(root, 'pool'), 'default');
}

/** A journal file of the engine under test (not of a crash copy). */
function inJournal(file: string): boolean {
  return file.startsWith(path.join(root, 'data', 'meta', 'journal-'));
}

function poolWrites(call: FileCall, file: string): boolean {
  return call === 'write' && file === poolFile();
}

function journalSyncs(call: FileCall, file: string): boolean {
  return call === 'fdatasync' && inJournal(file);
}

/** The disk as a crash now would leave it (kill -9: what was written is there, held writes are not). */
function crashCopy(): string {
  const copy = path.join(root, 'crashed');
  for (const part of ['data', 'pool']) fs.cpSync(path.join(root, part), path.join(copy, part), { recursive: true });
  return copy;
}

/** Opens the crash copy (recovery runs) and reads a volume's range; rejects on a checksum error. */
async function readAfterCrash(copy: string, name: string, offsetBytes: number, lengthBytes: number, log = logger): Promise<Buffer> {
  const engine = await openEngine(copy, undefined, log);
  const device = openExport(engine, name);
  try {
    return await device.read(offsetBytes, lengthBytes);
  } finally {
    device.close();
  }
}

/** An fdatasync of the pool file completed between events from and to. */
function expectPoolSyncedBetween(from: number, to: number): void {
  const synced = recorder!.find(from, 'fdatasync', poolFile());
  expect(synced).toBeGreaterThanOrEqual(from);
  expect(synced).toBeLessThan(to);
}

/** The pool file was written, then fdatasynced, then the journal was fdatasynced (what a FLUSH does). */
function expectDataThenJournalSynced(): void {
  const dataWritten = recorder!.find(0, 'write', poolFile());
  const dataSynced = recorder!.find(dataWritten, 'fdatasync', poolFile());
  const journalSynced = recorder!.find(dataSynced, 'fdatasync', inJournal);
  expect(dataWritten).toBeGreaterThanOrEqual(0);
  expect(dataSynced).toBeGreaterThan(dataWritten);
  expect(journalSynced).toBeGreaterThan(dataSynced);
}

/** Byte ranges [from, to) of buf and the byte each must hold; returns the ranges that do not. */
function mismatches(buf: Buffer, expected: [from: number, to: number, byte: number][]): string[] {
  return expected.filter(([from, to, byte]) => !buf.subarray(from, to).every((b) => b === byte)).map(([from, to, byte]) => `[${from}, ${to}) != ${byte}`);
}

function track<T>(promise: Promise<T>): Promise<T> {
  pending.push(promise);
  return promise;
}

describe('a write whose data had not landed when the process died reads back as before it', () => {
  test.each(['no FLUSH', 'a FLUSH done while it ran', 'a FLUSH in flight'])('with %s', async (flushCase) => {
    const device = await volumeV();
    await device.write(0, Buffer.alloc(BIG, OLD), false);
    await device.flush();

    recorder = FileOpsRecorder.install();
    const dataWrites = recorder.hold(poolWrites);
    // Its journal record is written, its data is held before the pool file.
    track(device.write(0, Buffer.alloc(BIG, NEW), false));
    await dataWrites.whenHeld();
    if (flushCase === 'a FLUSH done while it ran') {
      await device.flush();
    } else if (flushCase === 'a FLUSH in flight') {
      // The flush has written its SYNC record and waits for the journal's fdatasync.
      const syncs = recorder.hold(journalSyncs);
      track(device.flush());
      await syncs.whenHeld();
    }
    const copy = crashCopy();

    // A SYNC record that covered the write would make recovery trust a block that fails its checksum.
    const data = await readAfterCrash(copy, 'v', 0, BIG);
    expect(mismatches(data, [[0, BIG, OLD]])).toEqual([]);
  });
});

test('recovery rolls back every unsynced write whose data did not land, the oldest and the newest too', async () => {
  const device = await volumeV();
  await device.write(0, Buffer.alloc(4 * BIG, OLD), false);
  await device.flush();

  recorder = FileOpsRecorder.install();
  const dataWrites = recorder.hold(poolWrites);
  // In journal order: held, landed (a small write goes inline, past the gate), held, held.
  track(device.write(0, Buffer.alloc(BIG, NEW), false));
  await dataWrites.whenHeld(1);
  await device.write(3 * BIG, Buffer.alloc(BLOCK, NEW), false);
  track(device.write(BIG, Buffer.alloc(BIG, NEW), false));
  await dataWrites.whenHeld(2);
  track(device.write(2 * BIG, Buffer.alloc(BIG, NEW), false));
  await dataWrites.whenHeld(3);
  const copy = crashCopy();

  const lines: string[] = [];
  const data = await readAfterCrash(copy, 'v', 0, 4 * BIG, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
  expect(mismatches(data, [[0, 3 * BIG, OLD], [3 * BIG, 3 * BIG + BLOCK, NEW], [3 * BIG + BLOCK, 4 * BIG, OLD]])).toEqual([]);
  // The startup log counts the blocks checked and, apart, those rolled back: the three held writes.
  const opened = lines.map((line) => JSON.parse(line) as { msg: string; checked?: number; rolledBack?: number }).find((l) => l.msg === 'storage engine open');
  expect(opened).toMatchObject({ checked: (3 * BIG + BLOCK) / BLOCK, rolledBack: (3 * BIG) / BLOCK });
});

test('recovery takes an unsynced write whose block cannot be read (a bad sector) as not landed: the node starts, the block reads as before it', async () => {
  const device = await volumeV();
  await device.write(0, Buffer.alloc(BIG, OLD), false);
  await device.flush();
  await device.write(BLOCK, Buffer.alloc(BLOCK, NEW), false); // not flushed
  const copy = crashCopy();

  // Every read of the copy's pool file fails while it opens, as the checks of recovery read it.
  const copyPool = memberFileInDirectory(path.join(copy, 'pool'), 'default');
  const isCopyPool = (fd: number) => fs.readlinkSync(`/proc/self/fd/${fd}`) === copyPool;
  const eio = () => Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
  const below = setFileOps({} as FileOps);
  setFileOps({
    ...below,
    read: (fd, buf, offset, length, position, done) => (isCopyPool(fd) ? done(eio(), 0) : below.read(fd, buf, offset, length, position, done)),
    readSync: (fd, buf, offset, length, position) => {
      if (isCopyPool(fd)) throw eio();
      return below.readSync(fd, buf, offset, length, position);
    },
  });
  const lines: string[] = [];
  let engine: LocalEngine;
  try {
    engine = await openEngine(copy, undefined, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
  } finally {
    setFileOps(below);
  }
  const logged = lines.map((line) => JSON.parse(line) as { msg: string; rolledBack?: number });
  expect(logged.find((l) => l.msg === 'storage engine open')).toMatchObject({ rolledBack: 1 });
  expect(logged.some((l) => /cannot be read; rolled back/.test(l.msg))).toBe(true);
  const reopened = openExport(engine, 'v');
  try {
    expect(mismatches(await reopened.read(0, 2 * BLOCK), [[0, 2 * BLOCK, OLD]])).toEqual([]);
  } finally {
    reopened.close();
  }
});

test('no client opens a volume or a snapshot, and no verify reads it, while its delete commits: its handle would outlive it, and its reads and writes land on blocks freed for others', async () => {
  const engine = await openEngine(root);
  await engine.createVolume({ name: 'v', sizeBytes: MiB });
  await engine.createSnapshot('v', 's');
  for (const [what, remove, open, verify] of [
    ['snapshot v@s', () => engine.deleteSnapshot('v', 's'), () => engine.openSnapshot('v', 's'), () => engine.verifyVolume('v', undefined, 's')],
    ['volume v', () => engine.deleteVolume('v'), () => engine.openVolume('v'), () => engine.verifyVolume('v')],
  ] as const) {
    recorder = FileOpsRecorder.install();
    const syncs = recorder.hold(journalSyncs);
    const removing = track(remove());
    await syncs.whenHeld(); // the delete's record is written; its sync (the commit) waits
    expect(open).toThrow(`${what} is being deleted`);
    await expect(verify()).rejects.toThrow(`${what} is being deleted`);
    recorder.uninstall();
    recorder = undefined;
    await removing;
    expect(open).toThrow(/does not exist/);
  }
});

describe('a FLUSH fdatasyncs the pool file after the write it follows completed', () => {
  test.each(WRITE_SIZES)('a %s write', async (_name, bytes) => {
    const device = await volumeV();
    recorder = FileOpsRecorder.install();

    await device.write(0, Buffer.alloc(bytes, NEW), false);
    const written = recorder.events.length;
    // In spans of at most 16 KiB (file-io.ts WRITE_CHUNK_BYTES).
    expect(recorder.since(0, 'write', poolFile()).reduce((sum, w) => sum + (w.bytes ?? 0), 0)).toBe(bytes);
    await device.flush();
    const flushed = recorder.events.length;

    expectPoolSyncedBetween(written, flushed);
  });

  test('a 256 KiB write that was still in flight during the FLUSH before', async () => {
    const device = await volumeV();
    recorder = FileOpsRecorder.install();
    const dataWrites = recorder.hold(poolWrites);
    const write = track(device.write(0, Buffer.alloc(BIG, NEW), false));
    await dataWrites.whenHeld();
    // This FLUSH's sync of the pool cannot cover the held write (nor does its SYNC record).
    await device.flush();
    dataWrites.release();
    await write;
    const written = recorder.events.length;
    // This one's SYNC record covers the write: the data must be synced first.
    await device.flush();
    const flushed = recorder.events.length;

    expectPoolSyncedBetween(written, flushed);
  });
});

describe('a write with FUA is durable when it completes', () => {
  test.each(WRITE_SIZES)('a %s write: its data, then its journal record, are synced before it resolves', async (_name, bytes) => {
    const device = await volumeV();
    recorder = FileOpsRecorder.install();

    await device.write(0, Buffer.alloc(bytes, NEW), true);

    expectDataThenJournalSynced();
  });

  test.each(['v', `v${GROWABLE_SUFFIX}`])('over NBD through the exports weftd serves (%s): synced before the reply', async (exportName) => {
    const engine = await openEngine(root);
    await engine.createVolume({ name: 'v', sizeBytes: MiB });
    const server = new NbdServer({ provider: new EngineExports(engine), logger });
    servers.push(server);
    const { client } = await RawNbdClient.open(await server.listen('127.0.0.1', 0), exportName);
    clients.push(client);
    recorder = FileOpsRecorder.install();

    expect(await client.write(0, Buffer.alloc(BLOCK, NEW), CMD_FLAG.FUA)).toBe(0);

    expectDataThenJournalSynced();
  });

  test('a trim with FUA: its journal record is synced before it resolves', async () => {
    const device = await volumeV();
    await device.write(0, Buffer.alloc(BIG, OLD), false);
    await device.flush();
    recorder = FileOpsRecorder.install();

    await device.trim(0, BIG, true);

    const journalWritten = recorder.find(0, 'write', inJournal);
    const journalSynced = recorder.find(journalWritten, 'fdatasync', inJournal);
    expect(journalWritten).toBeGreaterThanOrEqual(0);
    expect(journalSynced).toBeGreaterThan(journalWritten);
  });
});

test('a trimmed block is reused by another write only after a journal sync made the trim durable', async () => {
  // A pool of 16 blocks, all written: the next allocation can only take the trimmed block.
  const engine = await openEngine(root, DATA_OFFSET_BYTES + 16 * BLOCK);
  const full = await volume(engine, 'full', 16 * BLOCK);
  const other = await volume(engine, 'other', BLOCK);
  recorder = FileOpsRecorder.install();
  await full.write(0, Buffer.alloc(16 * BLOCK, OLD), false);
  const [{ position: trimmedAt }] = recorder.since(0, 'write', poolFile());
  await full.flush();

  // The trim comes while a FLUSH waits for its journal sync: that flush's SYNC record does not cover it.
  const syncs = recorder.hold(journalSyncs);
  const flush = track(full.flush());
  await syncs.whenHeld();
  await full.trim(0, BLOCK, false);
  const trimmed = recorder.events.length;
  syncs.release();
  await flush;

  await other.write(0, Buffer.alloc(BLOCK, NEW), false);

  // The trim's record reached the journal file, a journal sync started after that and completed,
  // and only then was the block written over: else a power cut could leave the trimmed block mapped
  // in the journal, holding another volume's data.
  const reuse = recorder.events.findIndex((e, i) => i >= trimmed && e.call === 'write' && e.file === poolFile() && e.position === trimmedAt);
  const trimRecorded = recorder.find(trimmed, 'write', inJournal);
  const syncStarted = recorder.find(trimRecorded, 'fdatasync', inJournal, 'start');
  const syncDone = recorder.find(syncStarted, 'fdatasync', inJournal);
  expect(reuse).toBeGreaterThan(0);
  expect(trimRecorded).toBeGreaterThan(0);
  expect(syncStarted).toBeGreaterThan(trimRecorded);
  expect(syncDone).toBeGreaterThan(syncStarted);
  expect(syncDone).toBeLessThan(reuse);
  expect(mismatches(await other.read(0, BLOCK), [[0, BLOCK, NEW]])).toEqual([]);
  expect(mismatches(await full.read(0, 2 * BLOCK), [[0, BLOCK, 0], [BLOCK, 2 * BLOCK, OLD]])).toEqual([]);
});
