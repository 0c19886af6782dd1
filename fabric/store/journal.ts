// Append-only metadata journal. Records are buffered and written as frames, each with a length
// and CRC, so a frame torn by a crash is detected at replay and everything after it is ignored.

import * as fs from 'fs';
import { crc32 } from 'zlib';
import { fdatasync, pwriteAllSync } from './file-io';

const FRAME_MAGIC = 0x57454654; // "WEFT"
const FRAME_HEADER_BYTES = 12;

export class Journal {
  private buf = Buffer.allocUnsafe(1 << 20);
  private len = 0;
  private offset: number;
  private scheduled: Promise<void> | undefined;

  private constructor(private readonly fd: number, offset: number) {
    this.offset = offset;
  }

  /** Creates (or truncates) a journal file. */
  static create(file: string): Journal {
    const fd = fs.openSync(file, 'w');
    fs.fsyncSync(fd);
    return new Journal(fd, 0);
  }

  /** Reads the payloads of every intact frame of a journal file, in order; [] if it does not exist. */
  static readFrames(file: string): Buffer[] {
    if (!fs.existsSync(file)) return [];
    const data = fs.readFileSync(file);
    const frames: Buffer[] = [];
    let pos = 0;
    while (pos + FRAME_HEADER_BYTES <= data.length) {
      if (data.readUInt32LE(pos) !== FRAME_MAGIC) break;
      const length = data.readUInt32LE(pos + 4);
      const end = pos + FRAME_HEADER_BYTES + length;
      if (end > data.length) break;
      const payload = data.subarray(pos + FRAME_HEADER_BYTES, end);
      if (crc32(payload) !== data.readUInt32LE(pos + 8)) break;
      frames.push(payload);
      pos = end;
    }
    return frames;
  }

  /** Bytes written to the file so far. */
  get sizeBytes(): number {
    return this.offset;
  }

  /** Reserves n bytes in the buffer for the next record and returns the buffer and position. */
  reserve(n: number): { buf: Buffer; pos: number } {
    if (this.len + n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    const pos = this.len;
    this.len += n;
    return { buf: this.buf, pos };
  }

  /**
   * Writes every record buffered so far to the file (reaching the page cache: it survives a crash
   * of the process, not of the machine). The write happens in a microtask, so that all requests
   * handled in one turn of the event loop share one frame and one system call.
   */
  writeOut(): Promise<void> {
    if (!this.scheduled) {
      this.scheduled = Promise.resolve().then(() => {
        this.scheduled = undefined;
        this.writeFrame();
      });
    }
    return this.scheduled;
  }

  /** Writes out and makes durable every record buffered so far. */
  async sync(): Promise<void> {
    await this.writeOut();
    await fdatasync(this.fd);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** Appends the buffered records as one frame, synchronously: small appends to the page cache are cheap. */
  private writeFrame(): void {
    if (this.len === 0) return;
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + this.len);
    this.buf.copy(frame, FRAME_HEADER_BYTES, 0, this.len);
    const payload = frame.subarray(FRAME_HEADER_BYTES);
    frame.writeUInt32LE(FRAME_MAGIC, 0);
    frame.writeUInt32LE(this.len, 4);
    frame.writeUInt32LE(crc32(payload), 8);
    this.len = 0;
    pwriteAllSync(this.fd, frame, this.offset);
    this.offset += frame.length;
  }
}
