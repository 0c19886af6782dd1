// The embedded store's file: JSON records framed with their length and checksums, appended and
// synced in groups (a change is acknowledged once synced), and rewritten as one snapshot record
// when it has grown (new file, sync, rename, sync the directory). A group of several records is one
// frame (a JSON array of them): a crash can tear a group anywhere (its pages may reach the disk in
// any order), and a frame torn anywhere fails its checksum whole, with no whole frame after it.

import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { failedPrecondition } from '../errors';
import { pwritevAll, writeFileAtomicAsync } from '../store/file-io';
import { StoreUnavailableError } from './cluster-store';

/** u32 payload length, u32 CRC-32 of that length, u32 CRC-32 of the payload. */
const HEADER_BYTES = 12;
/** The file is rewritten once it is this big and 4 times its size after the last rewrite. */
const MIN_COMPACT_BYTES = 1024 * 1024;

export function encodeFrame(record: unknown): Buffer {
  return frameOf(JSON.stringify(record));
}

function frameOf(json: string): Buffer {
  const payload = Buffer.from(json);
  const frame = Buffer.alloc(HEADER_BYTES + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(zlib.crc32(frame.subarray(0, 4)), 4);
  frame.writeUInt32LE(zlib.crc32(payload), 8);
  payload.copy(frame, HEADER_BYTES);
  return frame;
}

export interface ParsedLog {
  records: unknown[];
  /** Where the last whole record ends; anything after it is a torn tail. */
  validBytes: number;
}

/**
 * Reads every record. A bad frame after the first (a snapshot) is the tail a crash tore off when no
 * whole frame follows it (or its header is whole and it runs past the end): groups are written one
 * at a time, each synced before the next, so only the last can be torn. It and the rest are left
 * out. A bad frame followed by a whole one, or a bad snapshot, means the file was damaged: that is
 * an error, never silently dropped.
 */
export function parseLog(data: Buffer, file: string): ParsedLog {
  const records: unknown[] = [];
  let offset = 0;
  while (offset < data.length) {
    const end = frameEnd(data, offset);
    // The first is the snapshot a rewrite wrote whole (file, sync, rename): never a torn tail.
    if (offset === 0 && (end === undefined || end > data.length)) throw damaged(file, 'its first record (a snapshot, written whole) fails its checksum');
    if (end === undefined) {
      if (!wholeFrameFrom(data, offset + 1)) break;
      throw damaged(file, `the record at byte ${offset} fails its checksum and more data follows it`);
    }
    if (end > data.length) break;
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.subarray(offset + HEADER_BYTES, end).toString());
    } catch {
      throw damaged(file, `the record at byte ${offset} passes its checksum but is not JSON`);
    }
    if (Array.isArray(parsed)) for (const record of parsed as unknown[]) records.push(record);
    else records.push(parsed);
    offset = end;
  }
  return { records, validBytes: offset };
}

/**
 * Where the frame at offset ends if it is whole (past the data's end: its header is whole and the
 * rest was cut off); undefined if it fails a checksum (or is too short for a header).
 */
function frameEnd(data: Buffer, offset: number): number | undefined {
  if (data.length - offset < HEADER_BYTES) return undefined;
  const length = data.readUInt32LE(offset);
  if (zlib.crc32(data.subarray(offset, offset + 4)) !== data.readUInt32LE(offset + 4)) return undefined;
  const end = offset + HEADER_BYTES + length;
  if (end > data.length) return end;
  return zlib.crc32(data.subarray(offset + HEADER_BYTES, end)) === data.readUInt32LE(offset + 8) ? end : undefined;
}

/** Whether a whole frame (not an empty one: no record is) starts anywhere from `from` on. */
function wholeFrameFrom(data: Buffer, from: number): boolean {
  for (let at = from; at + HEADER_BYTES < data.length; at++) {
    if (data.readUInt32LE(at) > data.length - at - HEADER_BYTES) continue; // no room for such a frame: no checksum to compute
    const end = frameEnd(data, at);
    if (end !== undefined && end <= data.length && end > at + HEADER_BYTES) return true;
  }
  return false;
}

export function damaged(file: string, what: string): Error {
  return failedPrecondition(
    `cluster store file ${file} is damaged: ${what}; weftd does not start on it. ` +
      'Restore the file from a backup, or move it away to start with an empty cluster store.',
  );
}

/**
 * Writes a file that holds only this record, atomically: it replaces the old file whole or not at
 * all. Every byte is written before the rename (a write may take part of its data on a file system
 * filling up): a rewrite cut short replaced the store with a file no start could read.
 */
export async function writeSnapshotFile(file: string, record: unknown): Promise<number> {
  const frame = encodeFrame(record);
  await writeFileAtomicAsync(file, frame, path.dirname(file));
  return frame.length;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Appends to the file; a failed write or sync fails the log for good (memory and file may differ). */
export class StoreLog {
  /** Records appended and not yet written, as JSON (as they were when appended). */
  private pending: string[] = [];
  /** A group of several records (an array frame) was written since the file was last rewritten. */
  private grouped = false;
  private waiters: Waiter[] = [];
  private writing = false;
  private last: Promise<void> = Promise.resolve();
  /** The run of writeOut under way: a rewrite may go on after the last append was acknowledged. */
  private run: Promise<void> = Promise.resolve();
  private failure?: Error;
  private compactAtBytes: number;

  constructor(
    private readonly file: string,
    private handle: FileHandle,
    private sizeBytes: number,
    /** The record that stands for everything appended so far. */
    private readonly snapshot: () => unknown,
  ) {
    this.compactAtBytes = Math.max(MIN_COMPACT_BYTES, 4 * sizeBytes);
  }

  /** Resolves once the record is durable. Records are written in the order of the calls. */
  append(record: unknown): Promise<void> {
    this.check();
    this.pending.push(JSON.stringify(record));
    this.last = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.writing) this.run = this.writeOut();
    return this.last;
  }

  /** Resolves once everything appended so far is durable. */
  synced(): Promise<void> {
    this.check();
    return this.last;
  }

  /** Throws if a write failed before. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /**
   * Once what was appended is written; a file holding groups is rewritten as one snapshot first, so
   * that weft versions before groups (they read one record per frame) start on a file closed cleanly.
   * Rejects, once the file is closed, if a write failed (that rewrite too): not a clean close.
   */
  async close(): Promise<void> {
    await this.last.catch(() => undefined);
    await this.run;
    if (this.grouped && !this.failure) await this.compact();
    await this.handle.close();
    this.check();
  }

  private async writeOut(): Promise<void> {
    this.writing = true;
    while (this.pending.length > 0) {
      const group = this.pending.splice(0);
      const data = frameOf(group.length === 1 ? group[0] : `[${group.join(',')}]`);
      if (group.length > 1) this.grouped = true;
      const waiters = this.waiters.splice(0);
      try {
        await pwritevAll(this.handle.fd, [data], this.sizeBytes);
        this.sizeBytes += data.length;
        await this.handle.datasync();
      } catch (error) {
        this.fail(error as Error, waiters);
        break;
      }
      for (const waiter of waiters) waiter.resolve();
      if (this.sizeBytes >= this.compactAtBytes && !(await this.compact())) break;
    }
    this.writing = false;
  }

  /**
   * Rewrites the file as one snapshot; records still pending are in the snapshot, so they are done
   * too, or fail with it. False if it failed.
   */
  private async compact(): Promise<boolean> {
    this.pending = [];
    const covered = this.waiters.splice(0);
    try {
      this.sizeBytes = await writeSnapshotFile(this.file, this.snapshot());
      await this.handle.close();
      this.handle = await fs.promises.open(this.file, 'r+');
    } catch (error) {
      this.fail(error as Error, covered);
      return false;
    }
    this.compactAtBytes = Math.max(MIN_COMPACT_BYTES, 4 * this.sizeBytes);
    this.grouped = false;
    for (const waiter of covered) waiter.resolve();
    return true;
  }

  private fail(error: Error, waiters: Waiter[]): void {
    const reason = (error as NodeJS.ErrnoException).code ?? error.message;
    const first = reason === 'ENOSPC' ? 'free space on its file system, then ' : '';
    this.failure = new StoreUnavailableError(`cluster store file ${this.file}: a write failed (${reason}); ${first}restart weftd to read it again`);
    for (const waiter of [...waiters, ...this.waiters.splice(0)]) waiter.reject(this.failure);
    this.pending = [];
  }
}
