// Durable metadata of one node: the catalog and every layer's block map, kept as a checkpoint plus
// a journal of changes since. Every change gets a sequence number; SYNC records say up to which
// number the data behind the changes is known to be on disk (see "recovery" in local-engine.ts).

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32 } from 'zlib';
import { Journal } from '../store/journal';
import { writeFileAtomic } from '../store/file-io';
import { BlockMap } from './block-map';
import { Catalog, emptyCatalog } from './catalog';

const CHECKPOINT_MAGIC = 'WEFTCKP1';
const REC_MAP = 1;
const REC_SYNC = 2;
const REC_CATALOG = 3;
const REC_RUN = 4;
const MAP_RECORD_BYTES = 17;
const RUN_HEADER_BYTES = 17;
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

export class Metadata {
  catalog: Catalog;
  readonly maps = new Map<number, BlockMap>();
  /** Undefined from open() until the first checkpoint(). */
  private journalFile: Journal | undefined;
  private generation: number;
  /** Sequence number of the last record appended in this generation. */
  private seq = 0;

  private constructor(private readonly dir: string, catalog: Catalog, generation: number) {
    this.catalog = catalog;
    this.generation = generation;
  }

  /**
   * Loads the checkpoint and replays the journal after it. Returns the map changes that no SYNC
   * record covers; the caller checks their data and rolls back those that did not land, then
   * calls checkpoint() to start a clean journal.
   */
  static open(dir: string): { metadata: Metadata; unsynced: UnsyncedChange[] } {
    fs.mkdirSync(dir, { recursive: true });
    const loaded = readCheckpoint(path.join(dir, 'checkpoint'));
    const generation = loaded?.generation ?? 0;
    const journalFile = journalPath(dir, generation);
    const frames = Journal.readFrames(journalFile);
    const metadata = new Metadata(dir, loaded?.catalog ?? emptyCatalog(), generation);
    if (loaded) for (const [id, map] of loaded.maps) metadata.maps.set(id, map);
    const unsynced = metadata.replay(frames);
    return { metadata, unsynced };
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

  /** Appends the current catalog (after a control operation changed it). */
  recordCatalog(): number {
    const json = Buffer.from(JSON.stringify(this.catalog));
    const { buf, pos } = this.journal.reserve(5 + json.length);
    buf[pos] = REC_CATALOG;
    buf.writeUInt32LE(json.length, pos + 1);
    json.copy(buf, pos + 5);
    return ++this.seq;
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
    return this.journal.sync();
  }

  /**
   * Writes the whole state as a new checkpoint and starts an empty journal. The caller must have
   * made all data durable and stopped I/O: afterwards nothing refers to the old journal.
   */
  checkpoint(): void {
    const next = this.generation + 1;
    const newJournal = Journal.create(journalPath(this.dir, next));
    writeFileAtomic(path.join(this.dir, 'checkpoint'), encodeCheckpoint(next, this.catalog, this.maps), this.dir);
    this.journalFile?.close();
    for (const name of fs.readdirSync(this.dir)) {
      if (name.startsWith('journal-') && name !== path.basename(journalPath(this.dir, next))) {
        fs.rmSync(path.join(this.dir, name), { force: true });
      }
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
    let unsynced: UnsyncedChange[] = [];
    for (const frame of frames) {
      let pos = 0;
      while (pos < frame.length) {
        const type = frame[pos];
        if (type === REC_MAP) {
          const seq = ++this.seq;
          const layer = frame.readUInt32LE(pos + 1);
          this.replayChange(unsynced, seq, layer, frame.readUInt32LE(pos + 5), frame.readUInt32LE(pos + 9), frame.readUInt32LE(pos + 13));
          pos += MAP_RECORD_BYTES;
        } else if (type === REC_RUN) {
          const seq = ++this.seq;
          const layer = frame.readUInt32LE(pos + 1);
          const firstBlock = frame.readUInt32LE(pos + 5);
          const count = frame.readUInt32LE(pos + 9);
          const firstValue = frame.readUInt32LE(pos + 13);
          for (let i = 0; i < count; i++) {
            this.replayChange(unsynced, seq, layer, firstBlock + i, firstValue + i, frame.readUInt32LE(pos + RUN_HEADER_BYTES + i * 4));
          }
          pos += RUN_HEADER_BYTES + count * 4;
        } else if (type === REC_SYNC) {
          const upTo = frame.readUInt32LE(pos + 1);
          unsynced = unsynced.filter((c) => c.seq > upTo);
          pos += 5;
        } else if (type === REC_CATALOG) {
          const length = frame.readUInt32LE(pos + 1);
          this.catalog = JSON.parse(frame.subarray(pos + 5, pos + 5 + length).toString()) as Catalog;
          ++this.seq;
          this.dropMapsOfRemovedLayers();
          const live = new Set(this.catalog.layers.map((l) => l.id));
          unsynced = unsynced.filter((c) => live.has(c.layer));
          pos += 5 + length;
        } else {
          throw new Error(`metadata journal: unknown record type ${type}; the data dir may be damaged`);
        }
      }
    }
    this.dropMapsOfRemovedLayers();
    return unsynced;
  }

  private replayChange(unsynced: UnsyncedChange[], seq: number, layer: number, block: number, value: number, crc: number): void {
    const map = this.mapOf(layer);
    const previousValue = map.value(block);
    const previousCrc = map.crc(block);
    map.set(block, value, crc);
    unsynced.push({ seq, layer, block, previousValue, previousCrc, value, crc });
  }

  private dropMapsOfRemovedLayers(): void {
    const live = new Set(this.catalog.layers.map((l) => l.id));
    for (const id of this.maps.keys()) if (!live.has(id)) this.maps.delete(id);
  }
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

function readCheckpoint(
  file: string,
): { generation: number; catalog: Catalog; maps: Map<number, BlockMap> } | undefined {
  if (!fs.existsSync(file)) return undefined;
  const buf = fs.readFileSync(file);
  const end = buf.length - 4;
  if (buf.subarray(0, 8).toString() !== CHECKPOINT_MAGIC || end < 16 || crc32(buf.subarray(0, end)) !== buf.readUInt32LE(end)) {
    throw new Error(`metadata checkpoint ${file} is damaged (bad magic or checksum)`);
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
