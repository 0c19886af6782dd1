// Thin promise wrappers over positional file I/O. They use the callback API directly: it costs one
// allocation less per call than fs.promises' FileHandle, which matters on the I/O path.

import * as fs from 'fs';
import { slicePieces, totalBytes, type Pieces } from '../pieces';

/** Writes the pieces one after another from position, with pwritev (retrying short writes). */
export function pwritevAll(fd: number, pieces: Pieces, position: number): Promise<void> {
  const total = totalBytes(pieces);
  return new Promise((resolve, reject) => {
    const step = (done: number, rest: Pieces) => {
      fs.writev(fd, rest, position + done, (err, written) => {
        if (err) return reject(err);
        if (done + written < total) return step(done + written, slicePieces(pieces, done + written, total));
        resolve();
      });
    };
    step(0, pieces);
  });
}

/** Fills buf from position; bytes past the end of the file read as zeroes. */
export function preadAll(fd: number, buf: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) => {
      fs.read(fd, buf, done, buf.length - done, position + done, (err, read) => {
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
export function pwriteAllSync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

/** pwritevAll on the calling thread. */
export function pwritevAllSync(fd: number, pieces: Pieces, position: number): void {
  const total = totalBytes(pieces);
  let done = fs.writevSync(fd, pieces, position);
  while (done < total) done += fs.writevSync(fd, slicePieces(pieces, done, total), position + done);
}

/** pread on the calling thread; bytes past the end of the file read as zeroes. */
export function preadAllSync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const read = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (read === 0) {
      buf.fill(0, done);
      return;
    }
    done += read;
  }
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Makes a rename or a new file in dir durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a whole file durably: temp file, fsync, rename over the target, fsync the directory. */
export function writeFileAtomic(file: string, data: Buffer | string, dir: string): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}
