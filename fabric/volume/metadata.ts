// Durable metadata of one node: the catalog and every layer's block map, kept as a checkpoint plus
// a journal of changes since. Every change gets a sequence number; SYNC records say up to which
// number the data behind the changes is known to be on disk (see "recovery" in local-engine.ts).
// A control operation is one CONTROL record (its catalog changes and map moves together), so it is
// replayed whole or not at all; a CANCEL record names one that failed, and replay skips it.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32 } from 'zlib';
import { Journal, JournalContents } from '../store/journal';
import { writeFileAtomic } from '../store/file-io';
import { BlockMap } from './block-map';
import { applyChanges, Catalog, CatalogChange, emptyCatalog } from './catalog';

const CHECKPOINT_MAGIC = 'WEFTCKP2';
const REC_MAP = 1;
const REC_SYNC = 2;
const REC_RUN = 4;
const REC_CONTROL = 5;
const REC_CANCEL = 6;
const MAP_RECORD_BYTES = 17;
const RUN_HEADER_BYTES = 17;
const MAP_CHANGE_BYTES = 16;
const LITTLE_ENDIAN = os.endianness() === 'LE';

/** A map change whose data may not have reached the disk before a crash. */
export interface UnsyncedChange {
  seq: number;
  layer: number;
  block: number;
  /** The entry before the change, to fall back to if the new data did not land. */
  previousValue: number;
  previousCrc: number;
  value: number;
  crc: number;
}

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
  | { type: 'sync'; upTo: number }
  | { type: 'control'; seq: number; changes: CatalogChange[]; maps: MapChange[] }
  | { type: 'cancel'; seq: number };

/**
 * The data dir's metadata cannot be read as it was written: a file is missing, or fails its
 * checksum where a crash cannot explain it. weftd refuses to start and changes nothing;
 * `weftd --recover` tells what would be lost.
 */
export class MetadataDamaged extends Error {
  constructor(readonly file: string, readonly problem: string, readonly offset?: number) {
    super(
      `metadata ${file}${offset === undefined ? '' : ` at offset ${offset}`}: ${problem}. weftd will not start on it and has changed nothing; ` +
        'keep a copy of the data dir, then run `weftd --recover` with the same flags to see what would be lost',
    );
    this.name = 'MetadataDamaged';
  }
}

/** What a data dir's metadata files hold, and the first problem that stops a normal start. */
export interface MetadataState {
  checkpoint?: Checkpoint;
  journal?: JournalContents;
  problem?: MetadataDamaged;
}

export interface OpenedMetadata {
  metadata: Metadata;
  /** Map changes that no SYNC record covers: recovery checks their data. */
  unsynced: UnsyncedChange[];
  /** Bytes at the journal's end that a crash left torn (never acknowledged), ignored. */
  tornTail?: { file: string; offset: number; bytes: number };
}

export class Metadata {
  catalog: Catalog;
  readonly maps = new Map<number, BlockMap>();
  /** Undefined from open() until the first checkpoint(). */
  private journalFile: Journal | undefined;
  private generation: number;
  /** Sequence number of the last record appended in this generation. */
  private seq = 0;
  /** Set when a checkpoint failed half-way: which files a restart would read is not known. */
  private broken: string | undefined;

  private constructor(private readonly dir: string, catalog: Catalog, generation: number) {
    this.catalog = catalog;
    this.generation = generation;
  }

  /** Writes the metadata of a new data dir: an empty checkpoint and its journal. */
  static initialize(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    const metadata = new Metadata(dir, emptyCatalog(), 0);
    metadata.checkpoint();
    metadata.close();
  }

  /**
   * Loads the checkpoint and replays the journal after it. The caller checks the data of the
   * unsynced changes and rolls back those that did not land, then calls checkpoint() to start a
   * clean journal. Throws MetadataDamaged, changing nothing, if a file is missing or damaged;
   * with acceptLoss (`weftd --recover --accept-loss`) it keeps what can be read instead: the
   * journal up to its damage, or nothing of a journal without its checkpoint.
   */
  static open(dir: string, acceptLoss = false): OpenedMetadata {
    const state = Metadata.inspect(dir);
    if (state.problem && !acceptLoss) throw state.problem;
    const checkpoint = state.checkpoint ?? { generation: 0, catalog: emptyCatalog(), maps: new Map<number, BlockMap>() };
    const metadata = new Metadata(dir, checkpoint.catalog, checkpoint.generation);
    for (const [id, map] of checkpoint.maps) metadata.maps.set(id, map);
    const unsynced = metadata.replay(state.checkpoint && state.journal ? state.journal.frames : []);
    const tornTail = state.journal?.tornTail && { file: journalPath(dir, checkpoint.generation), ...state.journal.tornTail };
    return { metadata, unsynced, tornTail };
  }

  /** Reads the checkpoint and its journal, and names the first problem that stops a normal start. */
  static inspect(dir: string): MetadataState {
    const checkpointFile = path.join(dir, 'checkpoint');
    if (!fs.existsSync(checkpointFile)) return { problem: new MetadataDamaged(checkpointFile, 'the checkpoint is missing') };
    let checkpoint: Checkpoint;
    try {
      checkpoint = readCheckpoint(checkpointFile);
    } catch (err) {
      if (err instanceof MetadataDamaged) return { problem: err };
      throw err;
    }
    const journalFile = journalPath(dir, checkpoint.generation);
    if (!fs.existsSync(journalFile)) {
      return { checkpoint, problem: new MetadataDamaged(journalFile, `the journal named by the checkpoint (generation ${checkpoint.generation}) is missing`) };
    }
    const journal = Journal.read(journalFile);
    return { checkpoint, journal, problem: journal.damage && new MetadataDamaged(journal.damage.file, journal.damage.reason, journal.damage.offset) };
  }

  get lastSeq(): number {
    return this.seq;
  }

  get journalBytes(): number {
    return this.journal.sizeBytes;
  }

  private get journal(): Journal {
    if (!this.journalFile) throw new Error('metadata: checkpoint() must follow open() before changes are recorded');
    return this.journalFile;
  }

  mapOf(layer: number): BlockMap {
    let map = this.maps.get(layer);
    if (!map) {
      map = new BlockMap();
      this.maps.set(layer, map);
    }
    return map;
  }

  /** Appends a map change and returns its sequence number. Does not change the map in memory. */
  recordMap(layer: number, block: number, value: number, crc: number): number {
    const { buf, pos } = this.journal.reserve(MAP_RECORD_BYTES);
    buf[pos] = REC_MAP;
    buf.writeUInt32LE(layer, pos + 1);
    buf.writeUInt32LE(block, pos + 5);
    buf.writeUInt32LE(value, pos + 9);
    buf.writeUInt32LE(crc >>> 0, pos + 13);
    return ++this.seq;
  }

  /**
   * Appends a run of map changes: blocks firstBlock.. get values firstValue.. (consecutive physical
   * blocks) with the given checksums. One record and one sequence number for the whole run.
   */
  recordRun(layer: number, firstBlock: number, firstValue: number, crcs: Uint32Array): number {
    const { buf, pos } = this.journal.reserve(RUN_HEADER_BYTES + crcs.length * 4);
    buf[pos] = REC_RUN;
    buf.writeUInt32LE(layer, pos + 1);
    buf.writeUInt32LE(firstBlock, pos + 5);
    buf.writeUInt32LE(crcs.length, pos + 9);
    buf.writeUInt32LE(firstValue, pos + 13);
    const at = pos + RUN_HEADER_BYTES;
    if (LITTLE_ENDIAN) Buffer.from(crcs.buffer, crcs.byteOffset, crcs.byteLength).copy(buf, at);
    else for (let i = 0; i < crcs.length; i++) buf.writeUInt32LE(crcs[i], at + i * 4);
    return ++this.seq;
  }

  /** Appends a control operation: its catalog changes and map moves, replayed together or not at all. */
  recordControl(changes: CatalogChange[], maps: MapChange[]): number {
    const json = Buffer.from(JSON.stringify(changes));
    const { buf, pos } = this.journal.reserve(9 + json.length + maps.length * MAP_CHANGE_BYTES);
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
    return ++this.seq;
  }

  /** Appends a record that undoes the control record seq (its operation failed). */
  recordCancel(seq: number): void {
    const { buf, pos } = this.journal.reserve(5);
    buf[pos] = REC_CANCEL;
    buf.writeUInt32LE(seq, pos + 1);
  }

  /** Appends a record saying that the data behind every change up to upTo is durable. */
  recordSync(upTo: number): void {
    const { buf, pos } = this.journal.reserve(5);
    buf[pos] = REC_SYNC;
    buf.writeUInt32LE(upTo, pos + 1);
  }

  /** Writes buffered records to the journal file (survives a crash of the process, not of the machine). */
  writeOut(): Promise<void> {
    return this.journal.writeOut();
  }

  /** Makes every appended record durable. */
  sync(): Promise<void> {
    if (this.broken) return Promise.reject(new Error(this.broken));
    return this.journal.sync();
  }

  /**
   * Writes the whole state as a new checkpoint and starts an empty journal. The caller must have
   * made all data durable and stopped I/O: afterwards nothing refers to the old journal. If it fails
   * before the new checkpoint is in place, the old journal stays in use; if it fails after, the
   * metadata refuses every sync until a restart, which reads whichever checkpoint the disk holds.
   */
  checkpoint(): void {
    if (this.broken) throw new Error(this.broken);
    const next = this.generation + 1;
    const nextJournal = journalPath(this.dir, next);
    const checkpointFile = path.join(this.dir, 'checkpoint');
    let newJournal: Journal | undefined;
    try {
      newJournal = Journal.create(nextJournal);
      writeFileAtomic(checkpointFile, encodeCheckpoint(next, this.catalog, this.maps), this.dir);
    } catch (err) {
      newJournal?.close();
      if (readGeneration(checkpointFile) === next) {
        this.broken = `metadata: a checkpoint failed after its rename (${(err as Error).message}); restart weftd`;
      } else {
        fs.rmSync(nextJournal, { force: true });
      }
      throw err;
    }
    this.journalFile?.close();
    for (const name of fs.readdirSync(this.dir)) {
      if (name.startsWith('journal-') && name !== path.basename(nextJournal)) fs.rmSync(path.join(this.dir, name), { force: true });
    }
    this.journalFile = newJournal;
    this.generation = next;
    this.seq = 0;
  }

  close(): void {
    this.journalFile?.close();
    this.journalFile = undefined;
  }

  private replay(frames: Buffer[]): UnsyncedChange[] {
    const records = decodeRecords(frames);
    const cancelled = new Set<number>();
    for (const r of records) if (r.type === 'cancel') cancelled.add(r.seq);
    let unsynced: UnsyncedChange[] = [];
    for (const r of records) {
      if (r.type === 'map') {
        this.replayChange(unsynced, r.seq, r.layer, r.block, r.value, r.crc);
      } else if (r.type === 'run') {
        for (let i = 0; i < r.crcs.length; i++) this.replayChange(unsynced, r.seq, r.layer, r.firstBlock + i, r.firstValue + i, r.crcs[i]);
      } else if (r.type === 'sync') {
        unsynced = unsynced.filter((c) => c.seq > r.upTo);
      } else if (r.type === 'control' && !cancelled.has(r.seq)) {
        applyChanges(this.catalog, r.changes);
        // Merged entries point at data that was durable before the operation began.
        for (const m of r.maps) this.mapOf(m.layer).set(m.block, m.value, m.crc);
      }
      if (r.type !== 'sync' && r.type !== 'cancel') this.seq = r.seq;
    }
    const live = new Set(this.catalog.layers.map((l) => l.id));
    for (const id of this.maps.keys()) if (!live.has(id)) this.maps.delete(id);
    return unsynced.filter((c) => live.has(c.layer));
  }

  private replayChange(unsynced: UnsyncedChange[], seq: number, layer: number, block: number, value: number, crc: number): void {
    const map = this.mapOf(layer);
    const previousValue = map.value(block);
    const previousCrc = map.crc(block);
    map.set(block, value, crc);
    unsynced.push({ seq, layer, block, previousValue, previousCrc, value, crc });
  }
}

/** Decodes the records of journal frames, numbering those that take a sequence number. */
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
      } else if (type === REC_SYNC || type === REC_CANCEL) {
        const value = frame.readUInt32LE(pos + 1);
        records.push(type === REC_SYNC ? { type: 'sync', upTo: value } : { type: 'cancel', seq: value });
        pos += 5;
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

function journalPath(dir: string, generation: number): string {
  return path.join(dir, `journal-${generation}`);
}

function encodeCheckpoint(generation: number, catalog: Catalog, maps: Map<number, BlockMap>): Buffer {
  const json = Buffer.from(JSON.stringify(catalog));
  let entries = 0;
  for (const map of maps.values()) entries += map.size;
  const size = 8 + 4 + 4 + json.length + 4 + maps.size * 8 + entries * 12 + 4;
  const buf = Buffer.alloc(size);
  let pos = buf.write(CHECKPOINT_MAGIC, 0);
  pos = buf.writeUInt32LE(generation, pos);
  pos = buf.writeUInt32LE(json.length, pos);
  pos += json.copy(buf, pos);
  pos = buf.writeUInt32LE(maps.size, pos);
  for (const [id, map] of maps) {
    pos = buf.writeUInt32LE(id, pos);
    pos = buf.writeUInt32LE(map.size, pos);
    map.forEach((block, value, crc) => {
      pos = buf.writeUInt32LE(block, pos);
      pos = buf.writeUInt32LE(value, pos);
      pos = buf.writeUInt32LE(crc >>> 0, pos);
    });
  }
  buf.writeUInt32LE(crc32(buf.subarray(0, pos)), pos);
  return buf;
}

export interface Checkpoint {
  generation: number;
  catalog: Catalog;
  maps: Map<number, BlockMap>;
}

function readCheckpoint(file: string): Checkpoint {
  const buf = fs.readFileSync(file);
  const end = buf.length - 4;
  if (buf.subarray(0, 8).toString() !== CHECKPOINT_MAGIC || end < 16 || crc32(buf.subarray(0, end)) !== buf.readUInt32LE(end)) {
    throw new MetadataDamaged(file, 'the checkpoint is damaged (bad magic or checksum)');
  }
  let pos = 8;
  const generation = buf.readUInt32LE(pos);
  const jsonLength = buf.readUInt32LE(pos + 4);
  pos += 8;
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
  return { generation, catalog, maps };
}

/** The generation a checkpoint file names, or undefined if it is missing or unreadable. */
function readGeneration(file: string): number | undefined {
  try {
    const head = Buffer.alloc(12);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, head, 0, 12, 0);
    } finally {
      fs.closeSync(fd);
    }
    return head.subarray(0, 8).toString() === CHECKPOINT_MAGIC ? head.readUInt32LE(8) : undefined;
  } catch {
    return undefined;
  }
}
