// The checkpoint file: the catalog and every layer's block map as of one sequence number, and the
// generation of the journal that goes on from there. Written whole and atomically, read at a start.

import * as fs from 'fs';
import * as path from 'path';
import { setImmediate as yieldToEventLoop } from 'timers/promises';
import { crc32 } from 'zlib';
import { writeFileAtomic, writeFileAtomicAsync } from '../store/file-io';
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
 * JSON, then per layer its id, entry count and entries (block, value, crc), and a CRC-32 of it all.
 * Yields every ENCODE_SLICE_SLOTS map slots, so that a caller can let other work run in between.
 */
function* encodeCheckpoint(state: CheckpointState): Generator<void, Buffer, void> {
  const json = Buffer.from(state.catalogJson);
  let entries = 0;
  for (const [, map] of state.maps) entries += map.size;
  const buf = Buffer.allocUnsafe(CHECKPOINT_HEADER_BYTES + json.length + 4 + state.maps.length * 8 + entries * 12 + 4);
  let pos = buf.write(CHECKPOINT_MAGIC, 0);
  pos = buf.writeUInt32LE(state.generation, pos);
  writeSeq(buf, pos, state.baseSeq);
  pos = buf.writeUInt32LE(json.length, pos + 8);
  pos += json.copy(buf, pos);
  pos = buf.writeUInt32LE(state.maps.length, pos);
  // A DataView: V8 compiles its stores inline, several times faster than Buffer.writeUInt32LE here.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let crc = 0;
  let checked = 0;
  let slots = 0;
  for (const [id, map] of state.maps) {
    pos = buf.writeUInt32LE(id, pos);
    pos = buf.writeUInt32LE(map.size, pos);
    for (const [index, { values, crcs }] of map.chunkEntries()) {
      // Multiplied, not shifted: block numbers go up to 2^32.
      const base = index * CHUNK_ENTRIES;
      for (let slot = 0; slot < CHUNK_ENTRIES; slot++) {
        const value = values[slot];
        if (value === ABSENT) continue;
        view.setUint32(pos, base + slot, true);
        view.setUint32(pos + 4, value, true);
        view.setUint32(pos + 8, crcs[slot], true);
        pos += 12;
      }
      slots += CHUNK_ENTRIES;
      if (slots >= ENCODE_SLICE_SLOTS) {
        crc = crc32(buf.subarray(checked, pos), crc);
        checked = pos;
        slots = 0;
        yield;
      }
    }
  }
  buf.writeUInt32LE(crc32(buf.subarray(checked, pos), crc), pos);
  return buf;
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

/** Reads a checkpoint file; throws MetadataDamaged if its magic or checksum does not match. */
export function readCheckpoint(file: string): Checkpoint {
  const buf = fs.readFileSync(file);
  const end = buf.length - 4;
  if (buf.subarray(0, 8).toString() !== CHECKPOINT_MAGIC || end < CHECKPOINT_HEADER_BYTES || crc32(buf.subarray(0, end)) !== buf.readUInt32LE(end)) {
    throw new MetadataDamaged(file, 'the checkpoint is damaged (bad magic or checksum)');
  }
  let pos = 8;
  const generation = buf.readUInt32LE(pos);
  const baseSeq = readSeq(buf, pos + 4);
  const jsonLength = buf.readUInt32LE(pos + 12);
  pos += 16;
  const catalog = JSON.parse(buf.subarray(pos, pos + jsonLength).toString()) as Catalog;
  pos += jsonLength;
  const layerCount = buf.readUInt32LE(pos);
  pos += 4;
  const maps = new Map<number, BlockMap>();
  for (let i = 0; i < layerCount; i++) {
    const id = buf.readUInt32LE(pos);
    const count = buf.readUInt32LE(pos + 4);
    pos += 8;
    const map = new BlockMap();
    for (let j = 0; j < count; j++, pos += 12) {
      map.set(buf.readUInt32LE(pos), buf.readUInt32LE(pos + 4), buf.readUInt32LE(pos + 8));
    }
    maps.set(id, map);
  }
  return { generation, baseSeq, catalog, maps };
}
