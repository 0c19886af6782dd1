// Append-only metadata journal. Records are buffered and written as frames, each with a length, a
// checksum and the offset up to which the file was durable when the frame was sealed.
//
// Failing safe: a record is never dropped. Records stay in memory until a sync has made them
// durable: a failed write is retried, in order, by the next write-out; after a failed sync every byte
// since the last good one is written again before a sync may succeed (after an fsync error the kernel
// may have dropped those pages while marking them clean). So a caller whose write-out or sync failed
// knows its records are not durable, and a later successful sync makes them durable in order, never
// with a gap.
//
// The file grows in whole chunks of zeroes (sparse), so a journal cut short behind weftd's back is
// recognised by its size, and the end of the records by the zeroes after them.

import * as fs from 'fs';
import * as path from 'path';
import { crc32 } from 'zlib';
import { fdatasync, fsyncDir, fsyncDirAsync, fsyncSync, ftruncateSync, pwriteAllSync } from './file-io';

const FRAME_MAGIC = 0x4a544657; // "WFTJ"
/** magic, payload length, durable offset (8 bytes), CRC-32 of the header's first 16 bytes and the payload. */
const FRAME_HEADER_BYTES = 20;
/** The file grows in steps of this many bytes. */
export const JOURNAL_CHUNK_BYTES = 1024 * 1024;
/**
 * Records not yet durable are kept in memory; past this many bytes sealed (syncs keep failing) a
 * write-out fails instead of sealing more. Appends are never refused: a caller appends a record and
 * the one that undoes it, and must not be stopped between the two.
 */
const MAX_UNSYNCED_BYTES = 256 * 1024 * 1024;

/** Too many bytes wait for a sync: a write-out writes only what was sealed. */
export class JournalFullError extends Error {
  constructor(file: string, waitingBytes: number) {
    super(`metadata journal ${file}: ${waitingBytes} bytes wait for a sync that keeps failing`);
    this.name = 'JournalFullError';
  }
}

/** Where and why a journal file could not be read to its end. */
export interface JournalDamage {
  file: string;
  offset: number;
  reason: string;
}

export interface JournalContents {
  /** Payloads of the intact frames before any damage, in order. */
  frames: Buffer[];
  /**
   * A damaged frame that later frames prove was durable (or a file cut short behind weftd's back):
   * reading on would skip records that were acknowledged.
   */
  damage?: JournalDamage;
  /** Payloads of intact frames after the damage: what would be lost by starting without them. */
  framesAfterDamage: Buffer[];
  /**
   * Bytes after the last intact frame that no later frame proves durable: a tail torn by a crash or
   * a power cut, which held nothing a sync had acknowledged.
   */
  tornTail?: { offset: number; bytes: number };
  /** Where the intact frames before any damage end. */
  end: number;
  /**
   * The furthest offset an intact frame says was durable when it was sealed: above 0, a sync of this
   * file completed while it was in use.
   */
  syncedUpTo: number;
}

export class Journal {
  /** Records appended since the last write-out, not yet sealed into a frame. */
  private open: Buffer = Buffer.allocUnsafe(1 << 20);
  private openLength = 0;
  /** Sealed frames from `durable` on: bytes [durable, durable + unsynced.length) of the file. */
  private unsynced: Buffer = Buffer.allocUnsafe(1 << 20);
  private unsyncedLength = 0;
  /** How many bytes of `unsynced` are known to be in the file (reset to 0 after a failed sync). */
  private written = 0;
  /** File offset up to which a sync has made the file durable. */
  private durable = 0;
  /** See writtenBytes. */
  private reached = 0;
  private fileBytes: number;
  private scheduled: Promise<void> | undefined;
  private syncs: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(private readonly fd: number, private readonly file: string, fileBytes: number, private readonly maxUnsyncedBytes: number) {
    this.fileBytes = fileBytes;
  }

  /**
   * Creates (or replaces) a journal file: one chunk of zeroes, made durable under a temporary name
   * and renamed into place, so that a crash never leaves a journal file of another size.
   */
  static create(file: string, maxUnsyncedBytes = MAX_UNSYNCED_BYTES): Journal {
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      ftruncateSync(fd, JOURNAL_CHUNK_BYTES);
      fsyncSync(fd);
      fs.renameSync(tmp, file);
      fsyncDir(path.dirname(file));
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    return new Journal(fd, file, JOURNAL_CHUNK_BYTES, maxUnsyncedBytes);
  }

  /** create() without blocking the event loop on its syncs. */
  static async createAsync(file: string): Promise<Journal> {
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      ftruncateSync(fd, JOURNAL_CHUNK_BYTES);
      await fdatasync(fd);
      await fs.promises.rename(tmp, file);
      await fsyncDirAsync(path.dirname(file));
    } catch (err) {
      fs.closeSync(fd);
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    return new Journal(fd, file, JOURNAL_CHUNK_BYTES, MAX_UNSYNCED_BYTES);
  }

  /**
   * Reads a journal file's frames. A frame that fails its checks ends the journal where only zeroes
   * follow (the normal end), or where no later frame proves it durable (a torn tail); otherwise
   * it is damage, reported with its offset.
   */
  static read(file: string): JournalContents {
    const data = fs.readFileSync(file);
    const frames: Buffer[] = [];
    if (data.length === 0 || data.length % JOURNAL_CHUNK_BYTES !== 0) {
      return {
        frames,
        framesAfterDamage: [],
        end: 0,
        syncedUpTo: 0,
        damage: { file, offset: data.length, reason: `its size (${data.length} bytes) is not a whole number of ${JOURNAL_CHUNK_BYTES}-byte chunks: it was cut short or replaced` },
      };
    }
    let pos = 0;
    let syncedUpTo = 0;
    for (;;) {
      const payload = frameAt(data, pos);
      if (!payload) break;
      frames.push(payload);
      syncedUpTo = Math.max(syncedUpTo, durableOffsetOf(data, pos));
      pos += FRAME_HEADER_BYTES + payload.length;
    }
    const lastNonZero = lastNonZeroByte(data, pos);
    if (lastNonZero < pos) return { frames, framesAfterDamage: [], end: pos, syncedUpTo };
    // Intact frames further on: if one was sealed when the file was durable past pos, the bytes at
    // pos had been synced, and a sync acknowledged them.
    const later: Buffer[] = [];
    let proof = false;
    const magic = Buffer.alloc(4);
    magic.writeUInt32LE(FRAME_MAGIC);
    for (let at = data.indexOf(magic, pos + 1); at >= 0; ) {
      const payload = frameAt(data, at);
      if (payload) {
        later.push(payload);
        if (durableOffsetOf(data, at) > pos) proof = true;
        syncedUpTo = Math.max(syncedUpTo, durableOffsetOf(data, at));
        at = data.indexOf(magic, at + FRAME_HEADER_BYTES + payload.length);
      } else {
        at = data.indexOf(magic, at + 1);
      }
    }
    if (!proof) return { frames, framesAfterDamage: [], tornTail: { offset: pos, bytes: lastNonZero + 1 - pos }, end: pos, syncedUpTo };
    return {
      frames,
      framesAfterDamage: later,
      end: pos,
      syncedUpTo,
      damage: { file, offset: pos, reason: 'a frame fails its checksum, and frames after it were synced' },
    };
  }

  /** Bytes in the journal, durable or not (what a checkpoint would drop). */
  get sizeBytes(): number {
    return this.durable + this.unsyncedLength + this.openLength;
  }

  /**
   * A position in the journal before every record appended from now on (they are sealed into frames
   * after what is sealed now): such a record may have reached the file only once writtenBytes > mark.
   */
  get appendMark(): number {
    return this.durable + this.unsyncedLength;
  }

  /**
   * How far the journal file has ever been written, synced or not (after a failed sync the bytes are
   * written again, but the first write may have reached the disk or survive in the page cache).
   */
  get writtenBytes(): number {
    return this.reached;
  }

  /** Bytes appended that no sync has made durable yet. */
  get pendingBytes(): number {
    return this.unsyncedLength + this.openLength;
  }

  /**
   * Seals every record appended since mark (an appendMark) into one frame, if none of them has
   * reached the file yet: written later, they reach it whole or not at all (a frame that a power cut
   * tears fails its checksum), never the first without the last. Returns whether it could (false
   * once some of them may be in the file). For a record and the one that cancels it.
   */
  sealTogetherFrom(mark: number): boolean {
    if (this.reached > mark || mark < this.durable) return false;
    const from = mark - this.durable;
    const payloads: Buffer[] = [];
    for (let at = from; at < this.unsyncedLength; ) {
      const length = this.unsynced.readUInt32LE(at + 4);
      payloads.push(this.unsynced.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length));
      at += FRAME_HEADER_BYTES + length;
    }
    payloads.push(this.open.subarray(0, this.openLength));
    const joined = Buffer.concat(payloads);
    this.unsyncedLength = from;
    this.written = Math.min(this.written, from);
    this.open = ensureRoom(this.open, 0, joined.length);
    joined.copy(this.open, 0);
    this.openLength = joined.length;
    this.sealOpen();
    return true;
  }

  /** Reserves n bytes for the next record and returns the buffer and position to fill in. */
  reserve(n: number): { buf: Buffer; pos: number } {
    this.open = ensureRoom(this.open, this.openLength, n);
    const pos = this.openLength;
    this.openLength += n;
    return { buf: this.open, pos };
  }

  /**
   * Writes every record appended so far to the file (reaching the page cache: it survives a crash
   * of the process, not of the machine). The write happens in a microtask, so that all requests
   * handled in one turn of the event loop share one frame and one system call. On failure the
   * records stay and the next write-out tries them again, first.
   */
  writeOut(): Promise<void> {
    if (!this.scheduled) {
      this.scheduled = Promise.resolve().then(() => {
        this.scheduled = undefined;
        if (this.closed) return;
        // Full, what was sealed is written still: a sync then makes room (syncOnce).
        let full: unknown;
        try {
          this.sealOpen();
        } catch (err) {
          full = err;
        }
        this.writeUnsynced();
        if (full) throw full;
      });
    }
    return this.scheduled;
  }

  /** Writes out and makes durable every record appended so far. Syncs run one at a time. */
  sync(): Promise<void> {
    const run = this.syncs.then(() => this.syncOnce());
    this.syncs = run.catch(() => undefined);
    return run;
  }

  private async syncOnce(): Promise<void> {
    // A sync queued behind the one after which its owner closed the journal: that sync covered
    // everything (no append follows a close), and the descriptor may be another file's by now.
    if (this.closed) return this.closedCheck();
    let full: JournalFullError | undefined;
    await this.writeOut().catch((err: unknown) => {
      if (!(err instanceof JournalFullError)) throw err;
      full = err;
    });
    if (this.closed) return this.closedCheck();
    const end = this.written;
    try {
      await fdatasync(this.fd);
    } catch (err) {
      this.written = 0;
      throw err;
    }
    // Bytes written while the sync ran stay in memory until the next one.
    this.unsynced.copy(this.unsynced, 0, end, this.unsyncedLength);
    this.unsyncedLength -= end;
    this.written -= end;
    this.durable += end;
    // Room made: the records that waited to be sealed go now, in a sync of their own.
    if (full) {
      if (end === 0) throw full;
      return this.syncOnce();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private closedCheck(): void {
    if (this.pendingBytes > 0) throw new Error(`metadata journal ${this.file} was closed with ${this.pendingBytes} bytes not durable`);
  }

  /** Moves the open records into a frame at the end of the unsynced bytes. */
  private sealOpen(): void {
    if (this.openLength === 0) return;
    const length = this.openLength;
    // Past the limit, what is open waits for a sync to drain what is sealed; then it is sealed whole.
    if (this.unsyncedLength > 0 && this.unsyncedLength + FRAME_HEADER_BYTES + length > this.maxUnsyncedBytes) throw new JournalFullError(this.file, this.unsyncedLength + length);
    this.unsynced = ensureRoom(this.unsynced, this.unsyncedLength, FRAME_HEADER_BYTES + length);
    const at = this.unsyncedLength;
    const frame = this.unsynced;
    frame.writeUInt32LE(FRAME_MAGIC, at);
    frame.writeUInt32LE(length, at + 4);
    frame.writeUInt32LE(this.durable % 0x1_0000_0000, at + 8);
    frame.writeUInt32LE(Math.floor(this.durable / 0x1_0000_0000), at + 12);
    this.open.copy(frame, at + FRAME_HEADER_BYTES, 0, length);
    frame.writeUInt32LE(frameCrc(frame, at, length), at + 16);
    this.unsyncedLength += FRAME_HEADER_BYTES + length;
    this.openLength = 0;
  }

  /** Writes what of the unsynced bytes is not known to be in the file, growing the file first if needed. */
  private writeUnsynced(): void {
    if (this.written === this.unsyncedLength) return;
    const end = this.durable + this.unsyncedLength;
    if (end > this.fileBytes) {
      const grown = Math.ceil(end / JOURNAL_CHUNK_BYTES) * JOURNAL_CHUNK_BYTES;
      ftruncateSync(this.fd, grown);
      this.fileBytes = grown;
    }
    const from = this.written;
    // Counted as each part lands: a write that fails after a short one has put part of the frames, or
    // all of the first, in the file, and a record there may come back at a restart (reachedBytes).
    pwriteAllSync(this.fd, this.unsynced.subarray(from, this.unsyncedLength), this.durable + from, (bytes) => {
      this.written = from + bytes;
      this.reached = Math.max(this.reached, this.durable + this.written);
    });
  }
}

function ensureRoom(buf: Buffer, used: number, more: number): Buffer {
  if (used + more <= buf.length) return buf;
  const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, used + more));
  buf.copy(bigger, 0, 0, used);
  return bigger;
}

function frameCrc(data: Buffer, at: number, length: number): number {
  const header = crc32(data.subarray(at, at + 16));
  return crc32(data.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length), header);
}

/** The payload of an intact frame at pos, or undefined. */
function frameAt(data: Buffer, pos: number): Buffer | undefined {
  if (pos + FRAME_HEADER_BYTES > data.length || data.readUInt32LE(pos) !== FRAME_MAGIC) return undefined;
  const length = data.readUInt32LE(pos + 4);
  if (pos + FRAME_HEADER_BYTES + length > data.length) return undefined;
  if (frameCrc(data, pos, length) !== data.readUInt32LE(pos + 16)) return undefined;
  return data.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + length);
}

function durableOffsetOf(data: Buffer, pos: number): number {
  return data.readUInt32LE(pos + 8) + data.readUInt32LE(pos + 12) * 0x1_0000_0000;
}

/** Index of the last byte at or after from that is not zero, or from - 1. */
function lastNonZeroByte(data: Buffer, from: number): number {
  let i = data.length - 1;
  while (i >= from && data[i] === 0) i--;
  return i;
}
