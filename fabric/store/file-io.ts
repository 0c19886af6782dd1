// Thin promise wrappers over positional file I/O. They use the callback API directly: it costs one
// allocation less per call than fs.promises' FileHandle, which matters on the I/O path.

import * as fs from 'fs';
import { loadNativeModule } from '../native';
import { piecesOf, slicePieces, totalBytes, type Pieces } from '../pieces';

/**
 * The calls through which every pool and metadata file is written, grown and synced, and pool files
 * are read. Production uses node's fs; tests put a layer under them that simulates a power cut
 * (writes since the last sync dropped), injects write and sync failures, or a slow device (setFileOps).
 */
export interface FileOps {
  readSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  read(fd: number, buf: Buffer, offset: number, length: number, position: number, done: (err: NodeJS.ErrnoException | null, read: number) => void): void;
  writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  writevSync(fd: number, pieces: Pieces, position: number): number;
  writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void;
  /** Writes all of the pieces from position, split at every multiple of spanBytes in the file, in one call on the thread pool. */
  writevSpans(fd: number, pieces: Pieces, position: number, spanBytes: number, done: (err: NodeJS.ErrnoException | null) => void): void;
  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void;
  fsyncSync(fd: number): void;
  ftruncateSync(fd: number, length: number): void;
}

const nodeFileOps: FileOps = {
  readSync: (fd, buf, offset, length, position) => fs.readSync(fd, buf, offset, length, position),
  read: (fd, buf, offset, length, position, done) => fs.read(fd, buf, offset, length, position, done),
  writeSync: (fd, buf, offset, length, position) => fs.writeSync(fd, buf, offset, length, position),
  writevSync: (fd, pieces, position) => fs.writevSync(fd, pieces, position),
  writev: (fd, pieces, position, done) => fs.writev(fd, pieces, position, done),
  writevSpans: (fd, pieces, position, spanBytes, done) => nativeIo().writevSpans(fd, pieces, position, spanBytes, done),
  fdatasync: (fd, done) => fs.fdatasync(fd, done),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
};

let ops: FileOps = nodeFileOps;

/** build/Release/weft_io.node (fabric/store/native/write-spans.c). */
type NativeIo = Pick<FileOps, 'writevSpans'>;
let native: NativeIo | undefined;
/** Loaded on first use: the CLI, which writes no pool, runs without it. */
function nativeIo(): NativeIo {
  native ??= loadNativeModule<NativeIo>('weft_io');
  return native;
}

/** Replaces the file calls (tests only); returns the ones in use before. */
export function setFileOps(next: FileOps): FileOps {
  const previous = ops;
  ops = next;
  return previous;
}

/** Writes the pieces one after another from position, with pwritev (retrying short writes). */
export function pwritevAll(fd: number, pieces: Pieces, position: number): Promise<void> {
  return pwritevAllThrough(ops, fd, pieces, position);
}

/** pwritevAll through the writev of the file calls given. */
function pwritevAllThrough(through: Pick<FileOps, 'writev'>, fd: number, pieces: Pieces, position: number): Promise<void> {
  const total = totalBytes(pieces);
  return new Promise((resolve, reject) => {
    const step = (done: number, rest: Pieces) => {
      through.writev(fd, rest, position + done, (err, written) => {
        if (err) return reject(err);
        if (done + written < total) return step(done + written, slicePieces(pieces, done + written, total));
        resolve();
      });
    };
    step(0, pieces);
  });
}

/**
 * The most pool data one write call covers, split at multiples of it in the file. Linux sizes the
 * page-cache folio that a write creates by the write: ext4 (kernel 6.16 on) makes a 1 MiB write
 * one large folio, and every later 4 KiB write into that folio walks all its block buffers: 17 us
 * a write against 2.3 us into 16 KiB folios on this machine (test/bench/README.md, "Page-cache
 * folios"). Copy-on-write puts small writes into blocks that large writes once held, so the pool's
 * folios are kept small; a large write costs a few more system calls.
 */
export const WRITE_CHUNK_BYTES = 16 * 1024;

/** Calls write(part, at) for the pieces at position, split at every multiple of spanBytes in the file. */
export function inSpans<T>(pieces: Pieces, position: number, spanBytes: number, write: (part: Pieces, at: number) => T): T[] {
  const total = totalBytes(pieces);
  const done: T[] = [];
  for (let from = 0; from < total; ) {
    const to = Math.min(total, (Math.floor((position + from) / spanBytes) + 1) * spanBytes - position);
    done.push(write(from === 0 && to === total ? pieces : slicePieces(pieces, from, to), position + from));
    from = to;
  }
  return done;
}

/**
 * pwritevAll in WRITE_CHUNK_BYTES spans of the file, one after another in a single call on libuv's
 * thread pool (FileOps.writevSpans): a large write holds one thread, not one per span. A failed
 * write may have written part of the data.
 */
export function pwritevChunked(fd: number, pieces: Pieces, position: number): Promise<void> {
  return new Promise((resolve, reject) => ops.writevSpans(fd, pieces, position, WRITE_CHUNK_BYTES, (err) => (err ? reject(err) : resolve())));
}

/**
 * FileOps.writevSpans through the writev of the file calls given, one span after another (each
 * retried to its end): for a layer of them that sees, and may change, every write (tests).
 */
export async function writevSpansThrough(through: Pick<FileOps, 'writev'>, fd: number, pieces: Pieces, position: number, spanBytes: number): Promise<void> {
  for (const { part, at } of inSpans(pieces, position, spanBytes, (part, at) => ({ part, at }))) await pwritevAllThrough(through, fd, part, at);
}

/** pwritevAllSync in WRITE_CHUNK_BYTES spans of the file. */
export function pwritevChunkedSync(fd: number, pieces: Pieces, position: number): void {
  const withinOne = position % WRITE_CHUNK_BYTES + totalBytes(pieces) <= WRITE_CHUNK_BYTES;
  if (withinOne) pwritevAllSync(fd, pieces, position); // a 4 KiB write, the usual one: no closure, no array
  else inSpans(pieces, position, WRITE_CHUNK_BYTES, (part, at) => pwritevAllSync(fd, part, at));
}

/** Fills buf from position; bytes past the end of the file read as zeroes. */
export function preadAll(fd: number, buf: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) => {
      ops.read(fd, buf, done, buf.length - done, position + done, (err, read) => {
        if (err) return reject(err);
        if (read === 0) {
          buf.fill(0, done);
          return resolve();
        }
        if (done + read < buf.length) return step(done + read);
        resolve();
      });
    };
    step(0);
  });
}

/**
 * Waits for every operation, then rejects with the first failure: a request must not end (and
 * release its range lock or its buffer) while some of its I/O is still running.
 */
export async function settleAll(operations: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(operations);
  for (const result of results) if (result.status === 'rejected') throw result.reason;
}

/** A settled promise to return from fast paths that completed synchronously. */
export const RESOLVED: Promise<void> = Promise.resolve();

/** pwrite on the calling thread, retrying short writes. */
export function pwriteAllSync(fd: number, buf: Buffer, position: number, progress?: (bytesWritten: number) => void): void {
  let done = 0;
  while (done < buf.length) {
    done += ops.writeSync(fd, buf, done, buf.length - done, position + done);
    progress?.(done); // a later call may fail: what this one wrote is in the file all the same
  }
}

/** pwritevAll on the calling thread. */
export function pwritevAllSync(fd: number, pieces: Pieces, position: number): void {
  const total = totalBytes(pieces);
  let done = ops.writevSync(fd, pieces, position);
  while (done < total) done += ops.writevSync(fd, slicePieces(pieces, done, total), position + done);
}

/** pread on the calling thread; bytes past the end of the file read as zeroes. */
export function preadAllSync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const read = ops.readSync(fd, buf, done, buf.length - done, position + done);
    if (read === 0) {
      buf.fill(0, done);
      return;
    }
    done += read;
  }
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => ops.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function fsyncSync(fd: number): void {
  ops.fsyncSync(fd);
}

export function ftruncateSync(fd: number, length: number): void {
  ops.ftruncateSync(fd, length);
}

/** Makes a rename or a new file in dir durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    ops.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * fsyncDir without blocking the event loop. Not through the FileOps layers: they leave directories
 * alone (a power-cut layer treats directory operations as durable at once).
 */
export async function fsyncDirAsync(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a whole file durably: temp file, fsync, rename over the target, fsync the directory. A
 * failure before the rename removes the temp file (on a full disk, its space is wanted back).
 */
export function writeFileAtomic(file: string, data: Buffer | Pieces | string, dir: string): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    pwritevAllSync(fd, typeof data === 'string' ? [Buffer.from(data)] : piecesOf(data), 0);
    ops.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}

/** writeFileAtomic without blocking the event loop, for a large file (a checkpoint). */
export async function writeFileAtomicAsync(file: string, data: Buffer | Pieces, dir: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    await pwritevAll(fd, piecesOf(data), 0);
    await fdatasync(fd);
  } catch (err) {
    fs.closeSync(fd);
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  await fs.promises.rename(tmp, file);
  await fsyncDirAsync(dir);
}
