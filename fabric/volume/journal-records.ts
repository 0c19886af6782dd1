// The metadata journal's record format: how Metadata appends its changes to a journal, and how
// journal frames decode back into records (for replay, and for `weftd --recover`).

import * as os from 'os';
import type { Journal } from '../store/journal';
import type { CatalogChange } from './catalog';
import { readSeq, writeSeq } from './seq-field';

const REC_MAP = 1;
const REC_RUN = 4;
const REC_CONTROL = 5;
const REC_SYNC = 7;
const REC_CANCEL = 8;
const REC_BASE = 9;
/** A SYNC that leaves out the pools named (they failed their sync): a type, a sequence number, a JSON list. */
const REC_SYNC_EXCEPT = 10;
const MAP_RECORD_BYTES = 17;
const RUN_HEADER_BYTES = 17;
const MAP_CHANGE_BYTES = 16;
/** A record that is a type and a sequence number (64 bits: numbers do not restart). */
const SEQ_RECORD_BYTES = 9;
const LITTLE_ENDIAN = os.endianness() === 'LE';
/** Runs of up to this many checksums (64 bytes, the most V8 keeps inside its heap) are written one by one. */
const SHORT_RUN_BLOCKS = 16;

/** A map entry set by a control operation (a merge of a deleted snapshot into its child). */
export interface MapChange {
  layer: number;
  block: number;
  value: number;
  crc: number;
}

/** A journal record, decoded. */
export type JournalRecord =
  | { type: 'map'; seq: number; layer: number; block: number; value: number; crc: number }
  | { type: 'run'; seq: number; layer: number; firstBlock: number; firstValue: number; crcs: number[] }
  /** exceptPools: pools whose changes up to upTo are not known durable (they failed their sync). */
  | { type: 'sync'; upTo: number; exceptPools?: string[] }
  | { type: 'control'; seq: number; changes: CatalogChange[]; maps: MapChange[] }
  | { type: 'cancel'; seq: number }
  /** The first record of every journal: seq is the number of the record before the journal's first. */
  | { type: 'base'; seq: number };

/** Appends a map change: block of layer gets value, with checksum crc. */
export function appendMap(journal: Journal, layer: number, block: number, value: number, crc: number): void {
  const { buf, pos } = journal.reserve(MAP_RECORD_BYTES);
  buf[pos] = REC_MAP;
  buf.writeUInt32LE(layer, pos + 1);
  buf.writeUInt32LE(block, pos + 5);
  buf.writeUInt32LE(value, pos + 9);
  buf.writeUInt32LE(crc >>> 0, pos + 13);
}

/** Appends a run of map changes: blocks firstBlock.. get values firstValue.. with the given checksums. */
export function appendRun(journal: Journal, layer: number, firstBlock: number, firstValue: number, crcs: Uint32Array): void {
  const { buf, pos } = journal.reserve(RUN_HEADER_BYTES + crcs.length * 4);
  buf[pos] = REC_RUN;
  buf.writeUInt32LE(layer, pos + 1);
  buf.writeUInt32LE(firstBlock, pos + 5);
  buf.writeUInt32LE(crcs.length, pos + 9);
  buf.writeUInt32LE(firstValue, pos + 13);
  const at = pos + RUN_HEADER_BYTES;
  // A short run's checksums one by one: crcs.buffer of a typed array this small (V8 keeps it inside
  // its heap) would have V8 move it out first, a malloc for every 4 KiB write.
  if (LITTLE_ENDIAN && crcs.length > SHORT_RUN_BLOCKS) Buffer.from(crcs.buffer, crcs.byteOffset, crcs.byteLength).copy(buf, at);
  else for (let i = 0; i < crcs.length; i++) buf.writeUInt32LE(crcs[i], at + i * 4);
}

/** Appends a control operation: its catalog changes (as JSON) and its map changes. */
export function appendControl(journal: Journal, changes: CatalogChange[], maps: MapChange[]): void {
  const json = Buffer.from(JSON.stringify(changes));
  const { buf, pos } = journal.reserve(9 + json.length + maps.length * MAP_CHANGE_BYTES);
  buf[pos] = REC_CONTROL;
  buf.writeUInt32LE(json.length, pos + 1);
  json.copy(buf, pos + 5);
  let at = buf.writeUInt32LE(maps.length, pos + 5 + json.length);
  for (const m of maps) {
    at = buf.writeUInt32LE(m.layer, at);
    at = buf.writeUInt32LE(m.block, at);
    at = buf.writeUInt32LE(m.value, at);
    at = buf.writeUInt32LE(m.crc >>> 0, at);
  }
}

/** Appends a SYNC record: the data behind every change up to upTo is durable, except in exceptPools. */
export function appendSync(journal: Journal, upTo: number, exceptPools?: readonly string[]): void {
  if (!exceptPools?.length) return appendSeqRecord(journal, REC_SYNC, upTo);
  const json = Buffer.from(JSON.stringify(exceptPools));
  const { buf, pos } = journal.reserve(SEQ_RECORD_BYTES + 4 + json.length);
  buf[pos] = REC_SYNC_EXCEPT;
  writeSeq(buf, pos + 1, upTo);
  buf.writeUInt32LE(json.length, pos + SEQ_RECORD_BYTES);
  json.copy(buf, pos + SEQ_RECORD_BYTES + 4);
}

/** Appends a CANCEL record: the control record seq is not to be replayed. */
export function appendCancel(journal: Journal, seq: number): void {
  appendSeqRecord(journal, REC_CANCEL, seq);
}

/** Appends a BASE record, a journal's first: seq is the number of the record before its first. */
export function appendBase(journal: Journal, seq: number): void {
  appendSeqRecord(journal, REC_BASE, seq);
}

function appendSeqRecord(journal: Journal, type: number, seq: number): void {
  const { buf, pos } = journal.reserve(SEQ_RECORD_BYTES);
  buf[pos] = type;
  writeSeq(buf, pos + 1, seq);
}

/**
 * Decodes the records of journal frames, numbering those that take a sequence number on from the
 * last BASE record (from 1 before any).
 */
export function decodeRecords(frames: Buffer[]): JournalRecord[] {
  const records: JournalRecord[] = [];
  let seq = 0;
  for (const frame of frames) {
    let pos = 0;
    while (pos < frame.length) {
      const type = frame[pos];
      if (type === REC_MAP) {
        records.push({ type: 'map', seq: ++seq, layer: frame.readUInt32LE(pos + 1), block: frame.readUInt32LE(pos + 5), value: frame.readUInt32LE(pos + 9), crc: frame.readUInt32LE(pos + 13) });
        pos += MAP_RECORD_BYTES;
      } else if (type === REC_RUN) {
        const count = frame.readUInt32LE(pos + 9);
        const crcs: number[] = [];
        for (let i = 0; i < count; i++) crcs.push(frame.readUInt32LE(pos + RUN_HEADER_BYTES + i * 4));
        records.push({ type: 'run', seq: ++seq, layer: frame.readUInt32LE(pos + 1), firstBlock: frame.readUInt32LE(pos + 5), firstValue: frame.readUInt32LE(pos + 13), crcs });
        pos += RUN_HEADER_BYTES + count * 4;
      } else if (type === REC_SYNC || type === REC_CANCEL || type === REC_BASE) {
        const value = readSeq(frame, pos + 1);
        if (type === REC_BASE) seq = value;
        records.push(type === REC_SYNC ? { type: 'sync', upTo: value } : { type: type === REC_CANCEL ? 'cancel' : 'base', seq: value });
        pos += SEQ_RECORD_BYTES;
      } else if (type === REC_SYNC_EXCEPT) {
        const length = frame.readUInt32LE(pos + SEQ_RECORD_BYTES);
        const at = pos + SEQ_RECORD_BYTES + 4;
        records.push({ type: 'sync', upTo: readSeq(frame, pos + 1), exceptPools: JSON.parse(frame.subarray(at, at + length).toString()) as string[] });
        pos = at + length;
      } else if (type === REC_CONTROL) {
        const length = frame.readUInt32LE(pos + 1);
        const changes = JSON.parse(frame.subarray(pos + 5, pos + 5 + length).toString()) as CatalogChange[];
        let at = pos + 5 + length;
        const count = frame.readUInt32LE(at);
        at += 4;
        const maps: MapChange[] = [];
        for (let i = 0; i < count; i++, at += MAP_CHANGE_BYTES) {
          maps.push({ layer: frame.readUInt32LE(at), block: frame.readUInt32LE(at + 4), value: frame.readUInt32LE(at + 8), crc: frame.readUInt32LE(at + 12) });
        }
        records.push({ type: 'control', seq: ++seq, changes, maps });
        pos = at;
      } else {
        // The frame's checksum matched, so this is not damage on disk but a journal of another version.
        throw new Error(`metadata journal: unknown record type ${type}; was the data dir written by another version of weftd?`);
      }
    }
  }
  return records;
}
