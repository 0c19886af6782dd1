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
// The file formats are in journal-records.ts and checkpoint-file.ts; metadata-state.ts reads the files.

import * as fs from 'fs';
import * as path from 'path';
import { Journal } from '../store/journal';
import { BlockMap } from './block-map';
import { applyChanges, Catalog, CatalogChange, emptyCatalog } from './catalog';
import { CheckpointState, writeCheckpoint, writeCheckpointSliced } from './checkpoint-file';
import { appendBase, appendCancel, appendControl, appendMap, appendRun, appendSync, JournalRecord, MapChange } from './journal-records';
import { inspectMetadata, journalPath, TornTail } from './metadata-state';


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

export class Metadata {
  catalog: Catalog;
  readonly maps = new Map<number, BlockMap>();
  /** The journal appends go to; undefined from open() until the first checkpoint. */
  private journalFile: Journal | undefined;
  /** Generation of that journal (after open(): of the last journal replayed). */
  private generation: number;
  /** Sequence number of the last record appended. */
  private seq: number;
  /**
   * Journals before the current one that no checkpoint on disk is known to cover, oldest first,
   * while they may still need a sync; closed once synced (each holds 2 MiB of buffers and a file
   * descriptor, and a checkpoint failing every 30 s on a full disk would pile them up).
   */
  private older: Journal[] = [];
  /** Bytes of the older journals closed since the last checkpoint on disk. */
  private olderClosedBytes = 0;
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
    const state = inspectMetadata(dir);
    if (state.problem && !acceptLoss) throw state.problem;
    const checkpoint = state.checkpoint ?? { generation: 0, baseSeq: 0, catalog: emptyCatalog(), maps: new Map<number, BlockMap>() };
    const metadata = new Metadata(dir, checkpoint.catalog, state.generation, checkpoint.baseSeq);
    for (const [id, map] of checkpoint.maps) metadata.maps.set(id, map);
    const unsynced = metadata.replay(state.records);
    return { metadata, unsynced, tornTail: state.tornTail };
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Bytes in the journals a start would replay (what a checkpoint would drop). */
  get journalBytes(): number {
    let bytes = this.journal.sizeBytes + this.olderClosedBytes;
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
    appendMap(this.journal, layer, block, value, crc);
    return ++this.seq;
  }

  /**
   * Appends a run of map changes: blocks firstBlock.. get values firstValue.. (consecutive physical
   * blocks) with the given checksums. One record and one sequence number for the whole run.
   */
  recordRun(layer: number, firstBlock: number, firstValue: number, crcs: Uint32Array): number {
    appendRun(this.journal, layer, firstBlock, firstValue, crcs);
    return ++this.seq;
  }

  /** Appends a control operation: its catalog changes and map moves, replayed together or not at all. */
  recordControl(changes: CatalogChange[], maps: MapChange[]): number {
    appendControl(this.journal, changes, maps);
    return ++this.seq;
  }

  /** A position before the next record appended; see sealTogetherFrom(). */
  appendMark(): number {
    return this.journal.appendMark;
  }

  /** Seals the records appended since mark into one journal frame, if none has reached the file (Journal.sealTogetherFrom). */
  sealTogetherFrom(mark: number): boolean {
    return this.journal.sealTogetherFrom(mark);
  }


  /** Appends a record that undoes the control record seq (its operation failed). */
  recordCancel(seq: number): void {
    appendCancel(this.journal, seq);
  }

  /** Appends a record saying that the data behind every change up to upTo is durable, except in exceptPools. */
  recordSync(upTo: number, exceptPools?: readonly string[]): void {
    appendSync(this.journal, upTo, exceptPools);
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
   * for its syncs. Optional: startCheckpoint() creates it itself otherwise. Fails, making none, while
   * the older journals of a checkpoint that failed cannot be made durable (a full disk): else each
   * try would add one more, each with its buffers and a descriptor.
   */
  prepareCheckpoint(): Promise<void> {
    if (this.prepared) return Promise.resolve();
    this.preparing ??= (async () => {
      try {
        await syncInOrder(this.older);
        this.closeOlder();
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
      writeCheckpoint(this.dir, state);
    } finally {
      this.checkpointRunning = false;
    }
    for (const file of this.dropOlder(state.generation)) fs.rmSync(file, { force: true });
  }

  close(): void {
    this.closeOlder();
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
    appendBase(this.journal, this.seq);
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
      this.closeOlder(); // durable, and no append goes to them: their files are all that is needed now
      await makeDataDurable();
      await writeCheckpointSliced(this.dir, state);
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
    this.closeOlder();
    this.olderClosedBytes = 0;
    return this.journalFiles((g) => g < generation);
  }

  private closeOlder(): void {
    for (const journal of this.older) {
      this.olderClosedBytes += journal.sizeBytes;
      journal.close();
    }
    this.older = [];
  }

  /**
   * Removes the journal files above the current generation: left by a start that did not read them.
   * The newest first: a crash part way leaves no gap in the journals, which a start takes for damage
   * when a journal after it was synced (metadata-state.ts).
   */
  private removeLaterJournals(): void {
    const generation = (file: string) => Number(/journal-(\d+)/.exec(path.basename(file))?.[1]);
    const later = this.journalFiles((g) => g > this.generation).sort((a, b) => generation(b) - generation(a));
    for (const file of later) fs.rmSync(file, { force: true });
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
        const upTo = r.upTo;
        const left = r.exceptPools ? this.layersIn(r.exceptPools) : undefined;
        unsynced = unsynced.filter((c) => c.seq > upTo || left?.has(c.layer));
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

  /** The ids of the catalog's layers in the pools named. */
  private layersIn(pools: readonly string[]): Set<number> {
    return new Set(this.catalog.layers.filter((l) => pools.includes(l.pool)).map((l) => l.id));
  }

  private replayChange(unsynced: UnsyncedChange[], seq: number, layer: number, block: number, value: number, crc: number): void {
    const map = this.mapOf(layer);
    const previousValue = map.value(block);
    const previousCrc = map.crc(block);
    map.set(block, value, crc);
    unsynced.push({ seq, layer, block, previousValue, previousCrc, value, crc });
  }
}

/** Syncs journals one after another: a journal counts only once the ones before it are durable. */
async function syncInOrder(journals: Journal[]): Promise<void> {
  for (const journal of journals) await journal.sync();
}
