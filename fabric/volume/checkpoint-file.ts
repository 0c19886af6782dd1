// The checkpoint file: the catalog and every layer's block map as of one sequence number, and the
// generation of the journal that goes on from there. Written whole and atomically, read at a start.

import * as fs from 'fs';
import * as path from 'path';
import { setImmediate as yieldToEventLoop } from 'timers/promises';
import { crc32 } from 'zlib';
import { preadAllSync, writeFileAtomic, writeFileAtomicAsync } from '../store/file-io';
import { ABSENT, BlockMap, CHUNK_ENTRIES } from './block-map';
import type { Catalog } from './catalog';
import { MetadataDamaged } from './metadata-damaged';
import { readSeq, writeSeq } from './seq-field';

const CHECKPOINT_MAGIC = 'WEFTCKP3';
/** Magic, generation, last sequence number covered, catalog length. */
const CHECKPOINT_HEADER_BYTES = 24;
/** Map slots a checkpoint encodes between two yields to the event loop. */
const ENCODE_SLICE_SLOTS = 64 * CHUNK_ENTRIES;

/** The state a checkpoint writes, captured at its cut. */
export interface CheckpointState {
  generation: number;
  baseSeq: number;
  catalogJson: string;
  maps: [number, BlockMap][];
}

/** A checkpoint as read back. */
export interface Checkpoint {
  generation: number;
  /** The last sequence number whose change the checkpoint holds. */
  baseSeq: number;
  catalog: Catalog;
  maps: Map<number, BlockMap>;
}

export function checkpointPath(dir: string): string {
  return path.join(dir, 'checkpoint');
}

/**
 * The encoding is made of segments of at most this many bytes, and read back through a window of
 * this size: a node's checkpoint passes 2 GiB (a Buffer's and a single read's limit on Node 20)
 * at about 180 million mapped blocks, 680 GiB of data.
 */
const SEGMENT_BYTES = 64 * 1024 * 1024;

/** Writes the checkpoint file of dir at once, blocking. */
export function writeCheckpoint(dir: string, state: CheckpointState): void {
  writeFileAtomic(checkpointPath(dir), runToEnd(encodeCheckpoint(state)), dir);
}

/** Writes the checkpoint file of dir, letting the event loop run between slices of the encoding. */
export async function writeCheckpointSliced(dir: string, state: CheckpointState): Promise<void> {
  const data = await runSliced(encodeCheckpoint(state));
  await writeFileAtomicAsync(checkpointPath(dir), data, dir);
}

/**
 * Encodes a checkpoint: magic, generation, the last sequence number it covers, the catalog as
 * JSON, then per layer its id, entry count and entries (block, value, crc), and a CRC-32 of it all,
 * as pieces of at most segmentBytes (the header and catalog in the first, whatever its size).
 * Yields every ENCODE_SLICE_SLOTS map slots, so that a caller can let other work run in between.
 */
export function* encodeCheckpoint(state: CheckpointState, segmentBytes = SEGMENT_BYTES): Generator<void, Buffer[], void> {
  const json = Buffer.from(state.catalogJson);
  const head = Buffer.allocUnsafe(CHECKPOINT_HEADER_BYTES + json.length + 4);
  let pos = head.write(CHECKPOINT_MAGIC, 0);
  pos = head.writeUInt32LE(state.generation, pos);
  writeSeq(head, pos, state.baseSeq);
  pos = head.writeUInt32LE(json.length, pos + 8);
  pos += json.copy(head, pos);
  head.writeUInt32LE(state.maps.length, pos);
  const pieces = [head];
  let crc = crc32(head);
  let left = 0; // bytes of the layers' part not yet in a segment
  for (const [, map] of state.maps) left += 8 + map.size * 12;
  let buf = Buffer.alloc(0);
  // A DataView: V8 compiles its stores inline, several times faster than Buffer.writeUInt32LE here.
  let view = new DataView(buf.buffer);
  pos = 0;
  let checked = 0;
  /** Room for bytes more in the segment, a new one begun if need be (what the last holds is checked first). */
  const room = (bytes: number) => {
    if (pos + bytes <= buf.length) return;
    crc = crcOn(buf.subarray(checked, pos), crc);
    if (pos > 0) pieces.push(buf.subarray(0, pos));
    buf = Buffer.allocUnsafe(Math.max(bytes, Math.min(left, segmentBytes)));
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    pos = checked = 0;
  };
  let slots = 0;
  for (const [id, map] of state.maps) {
    room(8);
    view.setUint32(pos, id, true);
    view.setUint32(pos + 4, map.size, true);
    pos += 8;
    left -= 8;
    for (const [index, { values, crcs }] of map.chunkEntries()) {
      // Multiplied, not shifted: block numbers go up to 2^32.
      const base = index * CHUNK_ENTRIES;
      for (let slot = 0; slot < CHUNK_ENTRIES; slot++) {
        const value = values[slot];
        if (value === ABSENT) continue;
        room(12);
        view.setUint32(pos, base + slot, true);
        view.setUint32(pos + 4, value, true);
        view.setUint32(pos + 8, crcs[slot], true);
        pos += 12;
        left -= 12;
      }
      slots += CHUNK_ENTRIES;
      if (slots >= ENCODE_SLICE_SLOTS) {
        crc = crcOn(buf.subarray(checked, pos), crc);
        checked = pos;
        slots = 0;
        yield;
      }
    }
  }
  crc = crcOn(buf.subarray(checked, pos), crc);
  if (pos > 0) pieces.push(buf.subarray(0, pos));
  const trailer = Buffer.allocUnsafe(4);
  trailer.writeUInt32LE(crc, 0);
  pieces.push(trailer);
  return pieces;
}

/** The CRC-32 of data on top of crc. An empty range is skipped: Node 20's crc32 answers 0 for some (an empty view of an empty buffer), not crc. */
function crcOn(data: Buffer, crc: number): number {
  return data.length === 0 ? crc : crc32(data, crc);
}

/** Runs an encoder to its end at once. */
function runToEnd<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** Runs an encoder, letting the event loop run between its slices. */
async function runSliced<T>(steps: Generator<void, T, void>): Promise<T> {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await yieldToEventLoop();
  }
}

/**
 * Reads a checkpoint file; throws MetadataDamaged if its magic or checksum does not match. The
 * file is read twice, a window at a time: once for its checksum, then parsed (of any size).
 */
export function readCheckpoint(file: string, windowBytes = SEGMENT_BYTES): Checkpoint {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const damaged = () => new MetadataDamaged(file, 'the checkpoint is damaged (bad magic or checksum)');
    if (size < CHECKPOINT_HEADER_BYTES + 4) throw damaged();
    const reader = new WindowReader(file, fd, size, windowBytes);
    const end = size - 4;
    let crc = 0;
    for (let at = 0; at < end; ) {
      const bytes = Math.min(windowBytes, end - at);
      crc = crc32(reader.bytes(at, bytes), crc);
      at += bytes;
    }
    if (reader.bytes(0, 8).toString() !== CHECKPOINT_MAGIC || crc !== reader.bytes(end, 4).readUInt32LE(0)) throw damaged();
    const header = reader.bytes(8, 16);
    const generation = header.readUInt32LE(0);
    const baseSeq = readSeq(header, 4);
    const jsonLength = header.readUInt32LE(12);
    let pos = CHECKPOINT_HEADER_BYTES;
    const catalog = JSON.parse(reader.bytes(pos, jsonLength).toString()) as Catalog;
    pos += jsonLength;
    const layerCount = reader.bytes(pos, 4).readUInt32LE(0);
    pos += 4;
    const maps = new Map<number, BlockMap>();
    for (let i = 0; i < layerCount; i++) {
      const layer = reader.bytes(pos, 8);
      const id = layer.readUInt32LE(0);
      let count = layer.readUInt32LE(4);
      pos += 8;
      const map = new BlockMap();
      while (count > 0) {
        const batch = Math.min(count, Math.max(1, Math.floor(windowBytes / 12)));
        const entries = reader.bytes(pos, batch * 12);
        for (let at = 0; at < entries.length; at += 12) map.set(entries.readUInt32LE(at), entries.readUInt32LE(at + 4), entries.readUInt32LE(at + 8));
        pos += entries.length;
        count -= batch;
      }
      maps.set(id, map);
    }
    return { generation, baseSeq, catalog, maps };
  } finally {
    fs.closeSync(fd);
  }
}

/** Ranges of a file read through one buffer, refilled as reads move forward. */
class WindowReader {
  private buf: Buffer;
  /** Where in the file buf[0] is, and how many bytes of buf hold the file. */
  private start = 0;
  private held = 0;

  constructor(private readonly file: string, private readonly fd: number, private readonly size: number, windowBytes: number) {
    this.buf = Buffer.allocUnsafe(windowBytes);
  }

  /** bytes of the file from position (valid until the next call); a range past the end means damage. */
  bytes(position: number, bytes: number): Buffer {
    if (position + bytes > this.size) throw new MetadataDamaged(this.file, `the checkpoint ends before its byte ${position + bytes}`);
    if (position < this.start || position + bytes > this.start + this.held) {
      if (bytes > this.buf.length) this.buf = Buffer.allocUnsafe(bytes); // a catalog larger than the window
      this.start = position;
      this.held = Math.min(this.buf.length, this.size - position);
      preadAllSync(this.fd, this.buf.subarray(0, this.held), position);
    }
    return this.buf.subarray(position - this.start, position - this.start + bytes);
  }
}
