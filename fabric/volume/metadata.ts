// Durable metadata of one node: the catalog and every layer's block map, kept as a checkpoint plus
// a journal of changes since. Every change gets a sequence number; SYNC records say up to which
// number the data behind the changes is known to be on disk (see "recovery" in local-engine.ts).
// A control operation is one CONTROL record (its catalog changes and map moves together), so it is
// replayed whole or not at all; a CANCEL record names one that failed, and replay skips it.
//
// A checkpoint is cut in an instant and written while I/O goes on: at the cut, appends move to the
// journal of the next generation and the maps are captured copy-on-write; the checkpoint file is
// written afterwards. Until it is in place the older journal stays, and a start replays the
// checkpoint's journal and every later one in order. Sequence numbers never restart: a checkpoint
// holds the last number it covers, and each journal begins with a BASE record naming the number
// before its first record, so that a journal is read only if the one before it is complete.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { setImmediate as yieldToEventLoop } from 'timers/promises';
import { crc32 } from 'zlib';
import { Journal } from '../store/journal';
import { writeFileAtomic, writeFileAtomicAsync } from '../store/file-io';
import { ABSENT, BlockMap, CHUNK_ENTRIES } from './block-map';
import { applyChanges, Catalog, CatalogChange, emptyCatalog } from './catalog';

const CHECKPOINT_MAGIC = 'WEFTCKP3';
const REC_MAP = 1;
const REC_RUN = 4;
const REC_CONTROL = 5;
const REC_SYNC = 7;
const REC_CANCEL = 8;
const REC_BASE = 9;
const MAP_RECORD_BYTES = 17;
const RUN_HEADER_BYTES = 17;
const MAP_CHANGE_BYTES = 16;
/** Magic, generation, last sequence number covered, catalog length. */
const CHECKPOINT_HEADER_BYTES = 24;
/** A record that is a type and a sequence number (64 bits: numbers do not restart). */
const SEQ_RECORD_BYTES = 9;
/** Map slots a checkpoint encodes between two yields to the event loop. */
const ENCODE_SLICE_SLOTS = 64 * CHUNK_ENTRIES;
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
  | { type: 'cancel'; seq: number }
  /** The first record of every journal: seq is the number of the record before the journal's first. */
  | { type: 'base'; seq: number };

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

/** Where the journals end before their last bytes: a crash cut them, and nothing there was acknowledged. */
export interface TornTail {
  file: string;
  offset: number;
  bytes: number;
  /** Later journals, whole, left out with it (records appended after the tail). */
  laterJournals?: string[];
}

/** What a data dir's metadata files hold, and the first problem that stops a normal start. */
export interface MetadataState {
  checkpoint?: Checkpoint;
  /** The journal files a start replays, in order: the checkpoint's own, then later ones. */
  journals: string[];
  /** Their records up to any problem or torn tail, in order. */
  records: JournalRecord[];
  /** Generation of the last journal replayed (where a start continues). */
  generation: number;
  /** Intact frames that the problem puts out of reach: what starting without them loses. */
  lostFrames: Buffer[];
  tornTail?: TornTail;
  problem?: MetadataDamaged;
}

export interface OpenedMetadata {
  metadata: Metadata;
  /** Map changes that no SYNC record covers: recovery checks their data. */
  unsynced: UnsyncedChange[];
  /** Bytes at the journal's end that a crash left torn (never acknowledged), ignored. */
  tornTail?: TornTail;
}

/** A checkpoint cut but not yet written: see Metadata.startCheckpoint(). */
export interface PendingCheckpoint {
  /** The last sequence number the checkpoint covers; later records are in the new journal. */
  readonly cutSeq: number;
  /**
   * Makes the older journal(s) durable, then awaits makeDataDurable (which must make the data of
   * every change up to cutSeq durable), then writes the checkpoint without blocking the event loop
   * for long and removes the journals it covers. Rejects, leaving every journal in place, if a step
   * fails; the next checkpoint tries again.
   */
  finish(makeDataDurable: () => Promise<void>): Promise<void>;
}

/** The state a checkpoint writes, captured at its cut. */
interface CheckpointState {
  generation: number;
  baseSeq: number;
  catalogJson: string;
  maps: [number, BlockMap][];
}

export class Metadata {
  catalog: Catalog;
  readonly maps = new Map<number, BlockMap>();
  /** The journal appends go to; undefined from open() until the first checkpoint. */
  private journalFile: Journal | undefined;
  /** Generation of that journal (after open(): of the last journal replayed). */
  private generation: number;
  /** Sequence number of the last record appended. */
  private seq: number;
  /** Journals before the current one that no checkpoint on disk is known to cover, oldest first. */
  private older: Journal[] = [];
  /** The next generation's journal, made ahead by prepareCheckpoint(). */
  private prepared: Journal | undefined;
  private preparing: Promise<void> | undefined;
  private checkpointRunning = false;

  private constructor(private readonly dir: string, catalog: Catalog, generation: number, seq: number) {
    this.catalog = catalog;
    this.generation = generation;
    this.seq = seq;
  }

  /** Writes the metadata of a new data dir: an empty checkpoint and its journal. */
  static initialize(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    const metadata = new Metadata(dir, emptyCatalog(), 0, 0);
    metadata.checkpoint();
    metadata.close();
  }

  /**
   * Loads the checkpoint and replays the journals after it. The caller checks the data of the
   * unsynced changes and rolls back those that did not land, then calls checkpoint() to start a
   * clean journal. Throws MetadataDamaged, changing nothing, if a file is missing or damaged;
   * with acceptLoss (`weftd --recover --accept-loss`) it keeps what can be read instead: the
   * journals up to their damage, or nothing of a journal without its checkpoint.
   */
  static open(dir: string, acceptLoss = false): OpenedMetadata {
    const state = Metadata.inspect(dir);
    if (state.problem && !acceptLoss) throw state.problem;
    const checkpoint = state.checkpoint ?? { generation: 0, baseSeq: 0, catalog: emptyCatalog(), maps: new Map<number, BlockMap>() };
    const metadata = new Metadata(dir, checkpoint.catalog, state.generation, checkpoint.baseSeq);
    for (const [id, map] of checkpoint.maps) metadata.maps.set(id, map);
    const unsynced = metadata.replay(state.records);
    return { metadata, unsynced, tornTail: state.tornTail };
  }

  /**
   * Reads the checkpoint and the journals from its generation on, and names the first problem that
   * stops a normal start. A journal is read only if the one before it is complete (read to its end,
   * and as long as the next one's BASE record says): otherwise nothing in it was acknowledged,
   * since a sync of a journal counts only once every older one is durable, and it is left out like
   * a torn tail. If one of them was synced all the same, records acknowledged are missing: damage.
   */
  static inspect(dir: string): MetadataState {
    const state: MetadataState = { journals: [], records: [], generation: 0, lostFrames: [] };
    const checkpointFile = path.join(dir, 'checkpoint');
    if (!fs.existsSync(checkpointFile)) return { ...state, problem: new MetadataDamaged(checkpointFile, 'the checkpoint is missing') };
    let checkpoint: Checkpoint;
    try {
      checkpoint = readCheckpoint(checkpointFile);
    } catch (err) {
      if (err instanceof MetadataDamaged) return { ...state, problem: err };
      throw err;
    }
    state.checkpoint = checkpoint;
    state.generation = checkpoint.generation;
    let seq = checkpoint.baseSeq;
    /** Why the log ended before this journal, once it has. */
    let endedEarly: string | undefined;
    for (let generation = checkpoint.generation; ; generation++) {
      const file = journalPath(dir, generation);
      if (!fs.existsSync(file)) {
        if (generation === checkpoint.generation) {
          state.problem = new MetadataDamaged(file, `the journal named by the checkpoint (generation ${generation}) is missing`);
        }
        return state;
      }
      const contents = Journal.read(file);
      const records = decodeRecords(contents.frames);
      const first = records[0];
      if (!endedEarly && first && (first.type !== 'base' || first.seq !== seq)) {
        endedEarly = `${journalPath(dir, generation - 1)} ends before record ${first.type === 'base' ? first.seq : '?'}, where this one begins`;
        state.tornTail = { file, offset: 0, bytes: contents.end };
      }
      if (endedEarly) {
        if (state.tornTail && state.tornTail.file !== file) (state.tornTail.laterJournals ??= []).push(file);
        for (const frame of contents.frames.concat(contents.framesAfterDamage)) state.lostFrames.push(frame);
        if (!state.problem && (contents.syncedUpTo > 0 || contents.damage)) {
          state.problem = new MetadataDamaged(file, `it was synced, but the journal before it is incomplete (${endedEarly})`);
        }
        continue;
      }
      state.journals.push(file);
      state.generation = generation;
      for (const record of records) {
        state.records.push(record);
        if (record.type !== 'sync' && record.type !== 'cancel') seq = record.seq;
      }
      if (contents.damage) {
        state.problem = new MetadataDamaged(contents.damage.file, contents.damage.reason, contents.damage.offset);
        for (const frame of contents.framesAfterDamage) state.lostFrames.push(frame);
        endedEarly = `${file} is damaged at offset ${contents.damage.offset}`;
      } else if (contents.tornTail) {
        state.tornTail = { file, ...contents.tornTail };
        endedEarly = `${file} ends torn at offset ${contents.tornTail.offset}`;
      }
    }
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Bytes in the journals a start would replay (what a checkpoint would drop). */
  get journalBytes(): number {
    let bytes = this.journal.sizeBytes;
    for (const journal of this.older) bytes += journal.sizeBytes;
    return bytes;
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
    this.recordSeq(REC_CANCEL, seq);
  }

  /** Appends a record saying that the data behind every change up to upTo is durable. */
  recordSync(upTo: number): void {
    this.recordSeq(REC_SYNC, upTo);
  }

  private recordSeq(type: number, seq: number): void {
    const { buf, pos } = this.journal.reserve(SEQ_RECORD_BYTES);
    buf[pos] = type;
    writeSeq(buf, pos + 1, seq);
  }

  /** Writes buffered records to the journal file (survives a crash of the process, not of the machine). */
  writeOut(): Promise<void> {
    return this.journal.writeOut();
  }

  /**
   * Makes every appended record durable. While an older journal is still needed (a checkpoint is
   * being written, or one failed), it is made durable first: a start reads a journal only after
   * the complete one before it, so the newer one's records count only then.
   */
  sync(): Promise<void> {
    if (this.older.length === 0) return this.journal.sync();
    return syncInOrder([...this.older.filter((journal) => journal.pendingBytes > 0), this.journal]);
  }

  /**
   * Creates the next generation's journal ahead of startCheckpoint(), so that the cut does not wait
   * for its syncs. Optional: startCheckpoint() creates it itself otherwise.
   */
  prepareCheckpoint(): Promise<void> {
    if (this.prepared) return Promise.resolve();
    this.preparing ??= (async () => {
      try {
        this.removeLaterJournals();
        this.prepared = await Journal.createAsync(journalPath(this.dir, this.generation + 1));
      } finally {
        this.preparing = undefined;
      }
    })();
    return this.preparing;
  }

  /**
   * Cuts a checkpoint: appends go to a new journal from now on, and the state as it is now (every
   * record up to cutSeq applied) is captured, maps copy-on-write. Costs O(map chunks) and the
   * catalog's size, plus the journal's creation unless prepareCheckpoint() made it already.
   *
   * The caller guarantees that no change is between its record and its application to the maps
   * at this instant (writes append before their data is written and change the map after), and
   * must then call finish(). I/O may go on meanwhile; once finish() resolved, frees recorded at
   * sequence numbers up to cutSeq are safe to release.
   */
  startCheckpoint(): PendingCheckpoint {
    const state = this.cut();
    return { cutSeq: state.baseSeq, finish: (makeDataDurable) => this.finish(state, makeDataDurable) };
  }

  /**
   * Writes the whole state as a new checkpoint at once, blocking. The caller must have made all data
   * durable and stopped I/O. If it fails, every journal stays and the next checkpoint tries again.
   */
  checkpoint(): void {
    const state = this.cut();
    try {
      writeFileAtomic(path.join(this.dir, 'checkpoint'), runToEnd(encodeCheckpoint(state)), this.dir);
    } finally {
      this.checkpointRunning = false;
    }
    for (const file of this.dropOlder(state.generation)) fs.rmSync(file, { force: true });
  }

  close(): void {
    for (const journal of this.older) journal.close();
    this.older = [];
    this.journalFile?.close();
    this.journalFile = undefined;
    this.prepared?.close();
    this.prepared = undefined;
  }

  private cut(): CheckpointState {
    if (this.checkpointRunning) throw new Error('metadata: a checkpoint is already being written');
    const generation = this.generation + 1;
    const journal = this.prepared ?? this.createJournal(generation);
    this.prepared = undefined;
    const maps: [number, BlockMap][] = [];
    for (const [id, map] of this.maps) maps.push([id, map.snapshot()]);
    const state: CheckpointState = { generation, baseSeq: this.seq, catalogJson: JSON.stringify(this.catalog), maps };
    if (this.journalFile) this.older.push(this.journalFile);
    this.journalFile = journal;
    this.generation = generation;
    this.recordSeq(REC_BASE, this.seq);
    this.checkpointRunning = true;
    return state;
  }

  private createJournal(generation: number): Journal {
    if (this.preparing) throw new Error('metadata: the next journal is still being created (await prepareCheckpoint())');
    this.removeLaterJournals();
    return Journal.create(journalPath(this.dir, generation));
  }

  private async finish(state: CheckpointState, makeDataDurable: () => Promise<void>): Promise<void> {
    try {
      await syncInOrder(this.older);
      await makeDataDurable();
      const data = await runSliced(encodeCheckpoint(state));
      await writeFileAtomicAsync(path.join(this.dir, 'checkpoint'), data, this.dir);
    } finally {
      this.checkpointRunning = false;
    }
    // Removing a 64 MiB file takes tens of milliseconds: not on the event loop.
    await Promise.all(this.dropOlder(state.generation).map((file) => fs.promises.rm(file, { force: true })));
  }

  /**
   * After the checkpoint of generation is in place (renamed and its directory synced): the older
   * journals are not read any more; returns their files (and stale ones) to remove. Until then
   * they stay: if a checkpoint fails after its rename, a start finds whichever checkpoint the disk
   * kept and the journals from its generation on.
   */
  private dropOlder(generation: number): string[] {
    for (const journal of this.older) journal.close();
    this.older = [];
    return this.journalFiles((g) => g < generation);
  }

  /** Removes the journal files above the current generation: left by a start that did not read them. */
  private removeLaterJournals(): void {
    for (const file of this.journalFiles((g) => g > this.generation)) fs.rmSync(file, { force: true });
  }

  /** The journal files (and temporary ones) of the generations that match. */
  private journalFiles(matches: (generation: number) => boolean): string[] {
    const files: string[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const generation = /^journal-(\d+)(\.tmp)?$/.exec(name)?.[1];
      if (generation !== undefined && matches(Number(generation))) files.push(path.join(this.dir, name));
    }
    return files;
  }

  private replay(records: JournalRecord[]): UnsyncedChange[] {
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

/** Sequence numbers in files: 64 bits, as two 32-bit halves (they stay below 2^53). */
function writeSeq(buf: Buffer, pos: number, seq: number): void {
  buf.writeUInt32LE(seq % 0x1_0000_0000, pos);
  buf.writeUInt32LE(Math.floor(seq / 0x1_0000_0000), pos + 4);
}

function readSeq(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos) + buf.readUInt32LE(pos + 4) * 0x1_0000_0000;
}

/** Syncs journals one after another: a journal counts only once the ones before it are durable. */
async function syncInOrder(journals: Journal[]): Promise<void> {
  for (const journal of journals) await journal.sync();
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

export interface Checkpoint {
  generation: number;
  /** The last sequence number whose change the checkpoint holds. */
  baseSeq: number;
  catalog: Catalog;
  maps: Map<number, BlockMap>;
}

function readCheckpoint(file: string): Checkpoint {
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
