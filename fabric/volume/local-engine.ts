// The storage engine of one node: pools of local disks, thin volumes, snapshots and clones, kept
// crash-safe by the metadata journal. Control operations run one at a time with I/O paused.

import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, invalidArgument, IoError, notFound, resourceExhausted, WeftError } from '../errors';
import { crc32c } from '../store/checksum';
import { Pool } from '../store/pool';
import { releaseLock, takeLock } from '../store/data-dir-lock';
import { settleAll, writeFileAtomic } from '../store/file-io';
import { BlockMap, FIRST_PHYSICAL } from './block-map';
import { Catalog, CatalogEdit, LayerRecord, SnapshotRecord, VolumeRecord } from './catalog';
import { MapChange, Metadata, OpenedMetadata } from './metadata';
import { LocalVolume, VolumeHost } from './local-volume';
import { openPools } from './pool-opening';
import {
  BLOCK_BYTES,
  MAX_VOLUME_BYTES,
  CloneVolumeRequest,
  CreateVolumeRequest,
  OpenDevice,
  PoolInfo,
  SnapshotInfo,
  VerifyReport,
  VolumeEngine,
  VolumeInfo,
} from './types';
import { DeviceHandle } from './device-handle';
import { validateName } from './names';
import { defaultClass } from './default-class';

/** On-disk format of a data dir; a weftd refuses any other. 2: checksummed journal chunks, control records. */
export const FORMAT_VERSION = 2;
/** Completed writes become durable at least this often even without a FLUSH (EngineOptions). */
export const DEFAULT_SYNC_INTERVAL_MS = 5000;
/** How often the background task looks whether a sync or a checkpoint is due. */
const BACKGROUND_INTERVAL_MS = 1000;
/** A checkpoint starts a fresh journal once the journal is this large. */
const CHECKPOINT_JOURNAL_BYTES = 64 * 1024 * 1024;
/** After a failed checkpoint (a full metadata disk, say), the next try waits this long. */
const CHECKPOINT_RETRY_MS = 30_000;
const VERIFY_BATCH_BLOCKS = 256;

export interface PoolSpec {
  class: string;
  /** A directory (a backing file is created there), an existing file, or a block device. */
  path: string;
  /** Size of the backing file to create in a directory; default: most of the filesystem's free space. */
  sizeBytes?: number;
}

export interface EngineOptions {
  dataDir: string;
  pools: PoolSpec[];
  logger: Logger;
  /**
   * Completed writes become durable at least this often without a FLUSH (default 5 s); 0: only
   * on FLUSH and FUA, as the NBD protocol requires. Recovery is correct either way: the interval
   * bounds what a client that never flushes can lose, and costs disk bandwidth.
   */
  syncIntervalMs?: number;
  /**
   * Start on damaged metadata, without what cannot be read (`weftd --recover --accept-loss`, after
   * the operator saw the report of what that loses). Default: refuse, changing nothing.
   */
  acceptMetadataLoss?: boolean;
}

interface Exported {
  device: LocalVolume;
  connections: number;
}

/**
 * What the running control operation changed besides the catalog: journaled with it when it
 * commits, undone when it fails.
 */
interface ControlTxn {
  catalog: CatalogEdit;
  /** Map entries it set (merges), with the entries they replaced. */
  maps: (MapChange & { previousValue: number; previousCrc: number })[];
  /** Maps of the layers it removed. */
  removedMaps: Map<number, BlockMap>;
  /** Blocks it frees once its record is durable. */
  frees: { pool: string; block: number }[];
  /** Sequence number of its journal record, once appended. */
  seq?: number;
}

export class LocalEngine implements VolumeEngine, VolumeHost {
  readonly metadata: Metadata;
  private readonly pools = new Map<string, Pool>();
  private readonly volumes = new Map<string, Exported>();
  private readonly snapshotExports = new Map<string, Exported>();
  private readonly checksumErrors = new Map<string, number>();
  private readonly inflightWrites = new Set<number>();
  private activeIo = 0;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  private drained: (() => void) | undefined;
  private controlChain: Promise<unknown> = Promise.resolve();
  private flushRunning: Promise<void> | undefined;
  private flushQueued: Promise<void> | undefined;
  private syncLane: Promise<unknown> = Promise.resolve();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private txn: ControlTxn | undefined;
  private checkpointQueued = false;
  private checkpointRetryAt = 0;

  private lastSyncAt = Date.now();

  private constructor(
    private readonly dataDir: string,
    metadata: Metadata,
    private readonly logger: Logger,
    private readonly syncIntervalMs: number,
  ) {
    this.metadata = metadata;
  }

  static async open(options: EngineOptions): Promise<LocalEngine> {
    const dataDir = path.resolve(options.dataDir);
    fs.mkdirSync(dataDir, { recursive: true });
    takeLock(dataDir);
    let engine: LocalEngine | undefined;
    try {
      prepareDataDir(dataDir);
      const opened = Metadata.open(path.join(dataDir, 'meta'), options.acceptMetadataLoss);
      const metadata = opened.metadata;
      engine = new LocalEngine(dataDir, metadata, options.logger, options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS);
      engine.openPools(options.pools);
      const rolledBack = await engine.recover(opened);
      engine.timer = setInterval(() => engine!.background(), BACKGROUND_INTERVAL_MS);
      engine.timer.unref();
      options.logger.info(
        { dataDir, volumes: metadata.catalog.volumes.length, snapshots: metadata.catalog.snapshots.length, checked: opened.unsynced.length, rolledBack },
        'storage engine open',
      );
      return engine;
    } catch (err) {
      if (engine) engine.releaseFiles();
      releaseLock(dataDir);
      throw err;
    }
  }

  // ---- volumes ----

  createVolume(request: CreateVolumeRequest): Promise<VolumeInfo> {
    return this.control(async () => {
      validateName('volume', request.name);
      const sizeBytes = this.checkSize(request.sizeBytes);
      const poolClass = this.resolveClass(request.class);
      this.checkFits(poolClass, sizeBytes);
      this.checkNameFree(request.name);
      const layer = this.newLayer(poolClass, null);
      const record: VolumeRecord = { name: request.name, class: poolClass, sizeBytes, head: layer.id, createdAt: now() };
      this.transaction().catalog.add('volume', record);
      this.attachVolume(record);
      await this.commit();
      this.logger.info({ volume: record.name, sizeBytes, class: poolClass }, 'volume created');
      return this.volumeInfo(record);
    });
  }

  cloneVolume(request: CloneVolumeRequest): Promise<VolumeInfo> {
    return this.control(async () => {
      validateName('volume', request.name);
      const snapshot = this.findSnapshot(request.volume, request.snapshot);
      const sizeBytes = request.sizeBytes ? this.checkSize(request.sizeBytes) : snapshot.sizeBytes;
      if (sizeBytes < snapshot.sizeBytes) {
        throw invalidArgument(`size ${sizeBytes} is smaller than snapshot ${request.volume}@${request.snapshot} (${snapshot.sizeBytes} bytes)`);
      }
      const poolClass = this.layer(snapshot.layer).pool;
      this.checkFits(poolClass, sizeBytes);
      this.checkNameFree(request.name);
      const layer = this.newLayer(poolClass, snapshot.layer);
      const record: VolumeRecord = {
        name: request.name,
        class: poolClass,
        sizeBytes,
        head: layer.id,
        createdAt: now(),
        sourceSnapshot: `${snapshot.volume}@${snapshot.name}`,
      };
      this.transaction().catalog.add('volume', record);
      this.attachVolume(record);
      await this.commit();
      this.logger.info({ volume: record.name, source: record.sourceSnapshot }, 'volume cloned');
      return this.volumeInfo(record);
    });
  }

  listVolumes(): VolumeInfo[] {
    return this.catalog.volumes.map((v) => this.volumeInfo(v));
  }

  getVolume(name: string): VolumeInfo {
    return this.volumeInfo(this.findVolume(name));
  }

  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.control(async () => {
      const record = this.findVolume(name);
      const newSize = this.checkSize(sizeBytes);
      if (newSize < record.sizeBytes) {
        throw invalidArgument(`volume ${name} is ${record.sizeBytes} bytes; shrinking to ${newSize} is not supported`);
      }
      this.checkFits(record.class, newSize);
      this.transaction().catalog.change('volume', record).sizeBytes = newSize;
      await this.commit();
      this.logger.info({ volume: name, sizeBytes: newSize }, 'volume resized');
      return this.volumeInfo(record);
    });
  }

  deleteVolume(name: string): Promise<void> {
    return this.control(async () => {
      const record = this.findVolume(name);
      const exported = this.volumes.get(name)!;
      if (exported.connections > 0) {
        throw failedPrecondition(`volume ${name} is in use by ${exported.connections} connection(s) (NBD clients or a verify); disconnect them first`);
      }
      // Its snapshots stay (as in Kubernetes, a snapshot outlives its volume): they are layers of
      // their own, and dropping the head frees only the blocks written since the last one.
      this.transaction().catalog.remove('volume', record);
      this.volumes.delete(name);
      this.dropLayer(record.head);
      await this.commit();
      this.checksumErrors.delete(name);
      this.logger.info({ volume: name }, 'volume deleted');
    });
  }

  /** Scrubs a volume, or the chain of a snapshot named VOL@SNAP. */
  async verifyVolume(name: string, onProgress?: (doneBlocks: number, totalBlocks: number) => void): Promise<VerifyReport> {
    const at = name.indexOf('@');
    if (at < 0) this.findVolume(name);
    else this.findSnapshot(name.slice(0, at), name.slice(at + 1));
    // Held open like a connection while it runs, so that the volume is not deleted or reverted under
    // it (its blocks freed and reused would read as false checksum errors).
    const handle = this.open(name);
    const device = (at < 0 ? this.volumes.get(name) : this.snapshotExports.get(name))!.device;
    const totalBlocks = Math.ceil(device.sizeBytes / BLOCK_BYTES);
    const badBlockOffsets: number[] = [];
    let checkedBlocks = 0;
    try {
      for (let first = 0; first < totalBlocks; first += VERIFY_BATCH_BLOCKS) {
        const end = Math.min(totalBlocks, first + VERIFY_BATCH_BLOCKS);
        for (let b = first; b < end; b++) if (device.resolve(b) >= FIRST_PHYSICAL) checkedBlocks++;
        badBlockOffsets.push(...(await device.scrub(first, end)));
        onProgress?.(end, totalBlocks);
      }
    } finally {
      handle.close();
    }
    this.logger.info({ volume: name, checkedBlocks, badBlocks: badBlockOffsets.length }, 'volume verified');
    return { volume: name, checkedBlocks, badBlockOffsets };
  }

  revertVolume(name: string, snapshotName: string): Promise<VolumeInfo> {
    return this.control(async () => {
      const record = this.findVolume(name);
      const snapshot = this.findSnapshot(name, snapshotName);
      const exported = this.volumes.get(name)!;
      if (exported.connections > 0) {
        throw failedPrecondition(`volume ${name} is in use by ${exported.connections} connection(s) (NBD clients or a verify); disconnect them before reverting`);
      }
      const oldHead = record.head;
      this.transaction().catalog.change('volume', record);
      record.head = this.newLayer(record.class, snapshot.layer).id;
      record.sizeBytes = snapshot.sizeBytes;
      this.dropLayer(oldHead);
      this.attachVolume(record);
      await this.commit();
      this.logger.info({ volume: name, snapshot: snapshotName }, 'volume reverted');
      return this.volumeInfo(record);
    });
  }

  // ---- snapshots ----

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    return this.control(async () => {
      const record = this.findVolume(volume);
      validateName('snapshot', name);
      if (this.catalog.snapshots.some((s) => s.volume === volume && s.name === name)) {
        throw alreadyExists(`snapshot ${volume}@${name} already exists`);
      }
      // The head becomes the snapshot as it is; the volume continues in a new, empty head.
      const frozen = record.head;
      this.transaction().catalog.change('volume', record).head = this.newLayer(record.class, frozen).id;
      const snapshot: SnapshotRecord = { volume, name, layer: frozen, sizeBytes: record.sizeBytes, createdAt: now() };
      this.transaction().catalog.add('snapshot', snapshot);
      this.attachVolume(record);
      await this.commit();
      this.logger.info({ volume, snapshot: name }, 'snapshot created');
      return this.snapshotInfo(snapshot);
    });
  }

  /** All snapshots, or those of one volume (which may have been deleted since: snapshots outlive it). */
  listSnapshots(volume?: string): SnapshotInfo[] {
    const snapshots = this.catalog.snapshots.filter((s) => volume === undefined || s.volume === volume);
    if (volume !== undefined && snapshots.length === 0) this.findVolume(volume);
    return snapshots.map((s) => this.snapshotInfo(s));
  }

  deleteSnapshot(volume: string, name: string): Promise<void> {
    return this.control(async () => {
      const snapshot = this.findSnapshot(volume, name);
      const exportName = `${volume}@${name}`;
      const exported = this.snapshotExports.get(exportName);
      if (exported && exported.connections > 0) {
        throw failedPrecondition(`snapshot ${exportName} is being read by ${exported.connections} NBD connection(s)`);
      }
      this.snapshotExports.delete(exportName);
      this.transaction().catalog.remove('snapshot', snapshot);
      this.transaction().catalog.change('layer', this.layer(snapshot.layer)).hidden = true;
      this.collectLayer(snapshot.layer);
      await this.commit();
      this.checksumErrors.delete(exportName);
      this.logger.info({ volume, snapshot: name }, 'snapshot deleted');
    });
  }

  // ---- pools and exports ----

  listPools(): PoolInfo[] {
    return this.catalog.pools.map((p) => {
      const pool = this.pools.get(p.class)!;
      const provisionedBytes = this.catalog.volumes.filter((v) => v.class === p.class).reduce((sum, v) => sum + v.sizeBytes, 0);
      return {
        class: p.class,
        capacityBytes: pool.totalBlocks * BLOCK_BYTES,
        usedBytes: pool.allocator.usedBlocks * BLOCK_BYTES,
        provisionedBytes,
        members: p.members.map((m) => ({ path: m.path, sizeBytes: m.blocks * BLOCK_BYTES })),
      };
    });
  }

  exportNames(): string[] {
    return [
      ...this.catalog.volumes.map((v) => v.name),
      ...this.catalog.snapshots.map((s) => `${s.volume}@${s.name}`),
    ];
  }

  open(exportName: string): OpenDevice {
    if (this.closed) throw new WeftError('UNAVAILABLE', 'weftd is shutting down');
    const at = exportName.indexOf('@');
    const exported = at < 0 ? this.volumes.get(exportName) : this.snapshotExport(exportName.slice(0, at), exportName.slice(at + 1));
    if (!exported) throw notFound(`no volume or snapshot named ${exportName}`);
    exported.connections++;
    return new DeviceHandle(exported.device, () => exported.connections--);
  }

  /**
   * Flushes, checkpoints and lets go of the files and the lock. If the final flush or checkpoint
   * fails (a failing disk), it still lets go, so that a restart can recover from the journal, and
   * then rejects with the failure.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    const final = this.control(async () => {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      await this.flushAll();
      await this.checkpoint();
    });
    const failure = await final.then(() => undefined, (err: unknown) => err);
    await this.inSyncLane(async () => {
      // Records still held in memory (trims, say) go to the journal if it can take them now.
      if (failure !== undefined) await this.metadata.writeOut().catch(() => undefined);
      this.releaseFiles();
    });
    releaseLock(this.dataDir);
    if (failure !== undefined) {
      this.logger.error({ err: failure, dataDir: this.dataDir }, 'storage engine closed without its final flush: the next start recovers from the journal');
      throw failure;
    }
    this.logger.info({ dataDir: this.dataDir }, 'storage engine closed');
  }

  // ---- VolumeHost: what the I/O path calls ----

  enter(): Promise<void> | undefined {
    if (this.closed) return Promise.reject(new IoError('ESHUTDOWN', 'weftd is shutting down'));
    if (this.gate) return this.gate.then(() => this.enter());
    this.activeIo++;
    return undefined;
  }

  leave(): void {
    this.activeIo--;
    if (this.activeIo === 0 && this.drained) this.drained();
  }

  writeStarted(seq: number): void {
    this.inflightWrites.add(seq);
    this.dirty = true;
  }

  writeFinished(seq: number): void {
    this.inflightWrites.delete(seq);
  }

  checksumError(volume: string, offsetBytes: number): void {
    this.checksumErrors.set(volume, (this.checksumErrors.get(volume) ?? 0) + 1);
    this.logger.error({ volume, offsetBytes }, 'checksum mismatch: block data does not match its checksum');
  }

  /** Group commit: callers that arrive while a flush runs share the next one. */
  flush(): Promise<void> {
    if (this.closed) return Promise.reject(new IoError('ESHUTDOWN', 'weftd is shutting down'));
    if (this.flushQueued) return this.flushQueued;
    if (this.flushRunning) {
      // Queued behind the running flush whether that one succeeds or fails.
      this.flushQueued = this.flushRunning.catch(() => undefined).then(() => {
        this.flushQueued = undefined;
        return this.flush();
      });
      return this.flushQueued;
    }
    const run = this.flushAll().finally(() => {
      this.flushRunning = undefined;
    });
    this.flushRunning = run;
    return run;
  }

  // ---- internals ----

  private get catalog(): Catalog {
    return this.metadata.catalog;
  }

  /**
   * Makes durable every write completed so far: data first, then a SYNC record naming the last
   * journal entry whose data is known written (writes still in flight are not covered).
   */
  private flushAll(): Promise<void> {
    return this.inSyncLane(() => this.flushNow());
  }

  /**
   * Flushes, checkpoints and closing the files take turns. A flush runs outside control operations
   * (NBD FLUSH, FUA, the background sync), and a checkpoint starts a new journal whose sequence
   * numbers restart: a flush still running across one would write a SYNC of old numbers into the new
   * journal and release frees that are not durable yet.
   */
  private inSyncLane<T>(step: () => Promise<T> | T): Promise<T> {
    const run = this.syncLane.then(step);
    this.syncLane = run.catch(() => undefined);
    return run;
  }

  private async flushNow(): Promise<void> {
    let upTo = this.metadata.lastSeq;
    for (const seq of this.inflightWrites) if (seq - 1 < upTo) upTo = seq - 1;
    this.dirty = false;
    this.lastSyncAt = Date.now();
    try {
      await settleAll([...this.pools.values()].map((p) => p.sync()));
      this.metadata.recordSync(upTo);
      await this.metadata.sync();
    } catch (err) {
      this.dirty = true;
      throw err;
    }
    for (const pool of this.pools.values()) pool.allocator.releaseUpTo(upTo);
  }

  private background(): void {
    if (this.closed) return;
    if (this.metadata.journalBytes > CHECKPOINT_JOURNAL_BYTES && !this.checkpointQueued && Date.now() >= this.checkpointRetryAt) {
      // Queued among the control operations, so that a steady stream of them does not put it off.
      this.checkpointQueued = true;
      this.control(async () => {
        await this.flushAll();
        await this.checkpoint();
      })
        .catch((err) => {
          this.checkpointRetryAt = Date.now() + CHECKPOINT_RETRY_MS;
          this.logger.error({ err, retryInSeconds: CHECKPOINT_RETRY_MS / 1000 }, 'checkpoint failed');
        })
        .finally(() => (this.checkpointQueued = false));
    } else if (!this.gate && this.dirty && this.syncIntervalMs > 0 && Date.now() - this.lastSyncAt >= this.syncIntervalMs) {
      this.flush().catch((err) => this.logger.error({ err }, 'background sync failed'));
    }
  }

  /** Writes a checkpoint; only with I/O paused and everything flushed. */
  private checkpoint(): Promise<void> {
    return this.inSyncLane(() => {
      this.metadata.checkpoint();
      for (const pool of this.pools.values()) pool.allocator.releaseAll();
    });
  }

  /**
   * Runs a control operation alone, with all I/O paused and drained. It commits whole (one journal
   * record, made durable) or, if it fails, leaves nothing behind: its changes are undone in memory
   * and its record, if appended, is cancelled.
   */
  private control<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.controlChain.then(async () => {
      if (this.closed) throw new WeftError('UNAVAILABLE', 'weftd is shutting down');
      await this.pauseIo();
      const txn: ControlTxn = { catalog: new CatalogEdit(this.catalog), maps: [], removedMaps: new Map(), frees: [] };
      this.txn = txn;
      try {
        const result = await operation();
        this.txn = undefined;
        return result;
      } catch (err) {
        this.rollback(txn);
        throw controlFailure(err);
      } finally {
        this.txn = undefined;
        this.resumeIo();
      }
    });
    this.controlChain = run.catch(() => undefined);
    return run;
  }

  private async pauseIo(): Promise<void> {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
    if (this.activeIo > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.drained = undefined;
  }

  private resumeIo(): void {
    const open = this.openGate;
    this.gate = undefined;
    this.openGate = undefined;
    open?.();
  }

  /** Journals the running control operation and makes it and every completed write durable. */
  private async commit(): Promise<void> {
    const txn = this.transaction();
    txn.seq = this.metadata.recordControl(txn.catalog.changes(), txn.maps);
    for (const f of txn.frees) this.pools.get(f.pool)!.allocator.freeAfterSync(f.block, txn.seq);
    await this.flushAll();
  }

  /** Undoes a failed control operation in memory, and in the journal if its record was appended. */
  private rollback(txn: ControlTxn): void {
    txn.catalog.undo();
    for (let i = txn.maps.length - 1; i >= 0; i--) {
      const m = txn.maps[i];
      this.metadata.mapOf(m.layer).set(m.block, m.previousValue, m.previousCrc);
    }
    for (const [id, map] of txn.removedMaps) this.metadata.maps.set(id, map);
    const live = new Set(this.catalog.layers.map((l) => l.id));
    for (const id of this.metadata.maps.keys()) if (!live.has(id)) this.metadata.maps.delete(id);
    if (txn.seq !== undefined) {
      for (const pool of this.pools.values()) pool.allocator.cancelFreesOf(txn.seq);
      // Written in order after the record it cancels, before anything appended later; if this
      // write-out fails too, the next one retries both.
      this.metadata.recordCancel(txn.seq);
      this.metadata.writeOut().catch(() => undefined);
    }
    for (const name of [...this.volumes.keys()]) if (!this.catalog.volumes.some((v) => v.name === name)) this.volumes.delete(name);
    this.refreshChains();
  }

  private transaction(): ControlTxn {
    if (!this.txn) throw new Error('engine: catalog changed outside a control operation');
    return this.txn;
  }

  private newLayer(poolClass: string, parent: number | null): LayerRecord {
    const layer: LayerRecord = { id: this.catalog.nextLayerId++, pool: poolClass, parent };
    this.transaction().catalog.add('layer', layer);
    this.metadata.mapOf(layer.id);
    return layer;
  }

  private layer(id: number): LayerRecord {
    const layer = this.catalog.layers.find((l) => l.id === id);
    if (!layer) throw new Error(`catalog damaged: layer ${id} is missing`);
    return layer;
  }

  /** Removes a layer nothing needs any more (a volume head) and collects its parent. */
  private dropLayer(id: number): void {
    const layer = this.layer(id);
    this.freeLayerBlocks(layer);
    this.removeLayer(layer);
    if (layer.parent !== null) this.collectLayer(layer.parent);
  }

  /**
   * A hidden layer (deleted snapshot) with no children is freed; with one child it is merged
   * into that child (entries the child lacks move down, the rest are freed); with several it
   * stays, since they all still read through it.
   */
  private collectLayer(id: number): void {
    const layer = this.layer(id);
    if (!layer.hidden) return;
    const children = this.catalog.layers.filter((l) => l.parent === id);
    if (children.length === 0) {
      this.dropLayer(id);
    } else if (children.length === 1) {
      this.mergeInto(layer, children[0]);
    }
  }

  private mergeInto(layer: LayerRecord, child: LayerRecord): void {
    const map = this.metadata.mapOf(layer.id);
    const childMap = this.metadata.mapOf(child.id);
    const txn = this.transaction();
    map.forEach((block, value, crc) => {
      if (childMap.value(block) === 0) {
        txn.maps.push({ layer: child.id, block, value, crc, previousValue: 0, previousCrc: childMap.crc(block) });
        childMap.set(block, value, crc);
      } else if (value >= FIRST_PHYSICAL) {
        txn.frees.push({ pool: layer.pool, block: value - FIRST_PHYSICAL });
      }
    });
    txn.catalog.change('layer', child).parent = layer.parent;
    this.removeLayer(layer);
    this.refreshChains();
  }

  /** The blocks become free once the record that removes the layer is durable (commit). */
  private freeLayerBlocks(layer: LayerRecord): void {
    const frees = this.transaction().frees;
    this.metadata.mapOf(layer.id).forEach((_block, value) => {
      if (value >= FIRST_PHYSICAL) frees.push({ pool: layer.pool, block: value - FIRST_PHYSICAL });
    });
  }

  private removeLayer(layer: LayerRecord): void {
    this.transaction().catalog.remove('layer', layer);
    this.transaction().removedMaps.set(layer.id, this.metadata.mapOf(layer.id));
    this.metadata.maps.delete(layer.id);
  }

  private chainOf(head: number): LocalVolume['chain'] {
    const chain = [];
    for (let id: number | null = head; id !== null; id = this.layer(id).parent) chain.push(this.metadata.mapOf(id));
    return chain;
  }

  /** Creates or updates the runtime device of a volume after its layers changed. */
  private attachVolume(record: VolumeRecord): void {
    let exported = this.volumes.get(record.name);
    if (!exported) {
      const device = new LocalVolume(record.name, this, this.pools.get(record.class)!, () => record.sizeBytes, false);
      exported = { device, connections: 0 };
      this.volumes.set(record.name, exported);
    }
    exported.device.headLayer = record.head;
    exported.device.chain = this.chainOf(record.head);
  }

  private snapshotExport(volume: string, name: string): Exported | undefined {
    const key = `${volume}@${name}`;
    let exported = this.snapshotExports.get(key);
    if (exported) return exported;
    const snapshot = this.catalog.snapshots.find((s) => s.volume === volume && s.name === name);
    if (!snapshot) return undefined;
    const pool = this.pools.get(this.layer(snapshot.layer).pool)!;
    const device = new LocalVolume(key, this, pool, () => snapshot.sizeBytes, true);
    device.headLayer = snapshot.layer;
    device.chain = this.chainOf(snapshot.layer);
    exported = { device, connections: 0 };
    this.snapshotExports.set(key, exported);
    return exported;
  }

  /** Layers merged or removed: every device re-reads its chain. */
  private refreshChains(): void {
    for (const record of this.catalog.volumes) this.attachVolume(record);
    for (const [key, exported] of this.snapshotExports) {
      const [volume, name] = key.split('@');
      const snapshot = this.catalog.snapshots.find((s) => s.volume === volume && s.name === name);
      if (snapshot) exported.device.chain = this.chainOf(snapshot.layer);
      else this.snapshotExports.delete(key);
    }
  }

  /**
   * A new volume's name must be unused, also by the snapshots of a deleted volume of that name: they
   * are exported as NAME@SNAP, and a new volume would take them over.
   */
  private checkNameFree(name: string): void {
    if (this.volumes.has(name)) throw alreadyExists(`volume ${name} already exists`);
    const orphans = this.catalog.snapshots.filter((s) => s.volume === name).map((s) => s.name);
    if (orphans.length > 0) {
      throw alreadyExists(`snapshots of an earlier volume named ${name} still exist (${orphans.join(', ')}): delete them or choose another name`);
    }
  }

  private findVolume(name: string): VolumeRecord {
    const record = this.catalog.volumes.find((v) => v.name === name);
    if (!record) throw notFound(`volume ${name} does not exist`);
    return record;
  }

  private findSnapshot(volume: string, name: string): SnapshotRecord {
    const snapshot = this.catalog.snapshots.find((s) => s.volume === volume && s.name === name);
    if (!snapshot) throw notFound(`snapshot ${volume}@${name} does not exist`);
    return snapshot;
  }

  private resolveClass(requested: string | undefined): string {
    if (requested) {
      if (!this.pools.has(requested)) {
        throw invalidArgument(`no pool of class "${requested}" on this node (pools: ${[...this.pools.keys()].join(', ')})`);
      }
      return requested;
    }
    const chosen = defaultClass([...this.pools.keys()]);
    if (chosen) return chosen;
    throw invalidArgument(`several pools exist (${[...this.pools.keys()].join(', ')}); name one with a class`);
  }

  /** Sizes are rounded up to whole 4 KiB blocks. */
  private checkSize(sizeBytes: number): number {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw invalidArgument(`size must be a positive number of bytes, got ${sizeBytes}`);
    }
    const rounded = Math.ceil(sizeBytes / BLOCK_BYTES) * BLOCK_BYTES;
    if (rounded > MAX_VOLUME_BYTES) throw invalidArgument(`size ${sizeBytes} is larger than a volume can be (16 TiB)`);
    return rounded;
  }

  /** Thin provisioning: one volume may not exceed its pool, though all of them together may. */
  private checkFits(poolClass: string, sizeBytes: number): void {
    const capacity = this.pools.get(poolClass)!.totalBlocks * BLOCK_BYTES;
    if (sizeBytes > capacity) {
      throw resourceExhausted(`a volume of ${sizeBytes} bytes does not fit in pool ${poolClass} (${capacity} bytes)`);
    }
  }

  private volumeInfo(record: VolumeRecord): VolumeInfo {
    const exported = this.volumes.get(record.name)!;
    return {
      name: record.name,
      class: record.class,
      sizeBytes: record.sizeBytes,
      allocatedBytes: this.metadata.mapOf(record.head).physicalBlocks * BLOCK_BYTES,
      sourceSnapshot: record.sourceSnapshot,
      snapshotCount: this.catalog.snapshots.filter((s) => s.volume === record.name).length,
      connections: exported.connections,
      checksumErrors: this.checksumErrors.get(record.name) ?? 0,
      createdAt: record.createdAt,
    };
  }

  private snapshotInfo(snapshot: SnapshotRecord): SnapshotInfo {
    return {
      volume: snapshot.volume,
      name: snapshot.name,
      sizeBytes: snapshot.sizeBytes,
      exclusiveBytes: this.metadata.mapOf(snapshot.layer).physicalBlocks * BLOCK_BYTES,
      createdAt: snapshot.createdAt,
      class: this.layer(snapshot.layer).pool,
      checksumErrors: this.checksumErrors.get(`${snapshot.volume}@${snapshot.name}`) ?? 0,
    };
  }

  // ---- startup ----

  private openPools(specs: PoolSpec[]): void {
    const opened = openPools(specs, this.catalog, this.logger);
    for (const [poolClass, pool] of opened.pools) this.pools.set(poolClass, pool);
    this.catalog.pools = opened.records;
  }

  /**
   * Recovery: journal entries after the last SYNC record may name blocks whose data never
   * reached the disk. Each such entry is checked against its checksum and rolled back to the
   * entry before it if the data is not there. Then the free-space maps are rebuilt from the
   * block maps (nothing leaks), the pools are synced and a checkpoint starts a clean journal.
   */
  private async recover({ unsynced, tornTail }: OpenedMetadata): Promise<number> {
    if (tornTail) this.logger.warn(tornTail, 'metadata journal: ignoring a tail torn by a crash (it held nothing a sync had acknowledged)');
    const buf = Buffer.allocUnsafe(BLOCK_BYTES);
    let rolledBack = 0;
    for (let i = unsynced.length - 1; i >= 0; i--) {
      const change = unsynced[i];
      const map = this.metadata.maps.get(change.layer);
      if (!map || map.value(change.block) !== change.value || map.crc(change.block) !== change.crc) continue;
      if (change.value < FIRST_PHYSICAL) continue;
      await this.pools.get(this.layer(change.layer).pool)!.read(change.value - FIRST_PHYSICAL, buf);
      if (crc32c(buf) !== change.crc) {
        map.set(change.block, change.previousValue, change.previousCrc);
        rolledBack++;
      }
    }
    for (const layer of this.catalog.layers) {
      const allocator = this.pools.get(layer.pool)!.allocator;
      this.metadata.mapOf(layer.id).forEach((_block, value) => {
        if (value >= FIRST_PHYSICAL) allocator.markUsed(value - FIRST_PHYSICAL);
      });
    }
    for (const record of this.catalog.volumes) this.attachVolume(record);
    // The kept entries may name data that reached only the page cache before the crash: it must be
    // durable before the checkpoint drops the journal, or a power loss now would leave blocks that
    // fail their checksum with no record left to roll them back.
    await Promise.all([...this.pools.values()].map((p) => p.sync()));
    await this.checkpoint();
    return rolledBack;
  }

  private releaseFiles(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.metadata.close();
  }
}

function now(): string {
  return new Date().toISOString();
}

/**
 * A failed control operation's error as the caller sees it: its own if it refused, else what the
 * metadata disk said, with the news that nothing changed.
 */
function controlFailure(err: unknown): unknown {
  if (err instanceof WeftError) return err;
  const message = `${err instanceof Error ? err.message : String(err)}; the operation was undone, nothing changed`;
  if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return resourceExhausted(`the metadata disk is full: ${message}`);
  if ((err as NodeJS.ErrnoException).code !== undefined || err instanceof IoError) return new WeftError('UNAVAILABLE', `could not be made durable: ${message}`);
  return err;
}

/**
 * Checks the FORMAT of an existing data dir, or makes a new one: its metadata first, its FORMAT
 * file last, so that a data dir with a FORMAT file always has its metadata.
 */
function prepareDataDir(dataDir: string): void {
  const formatFile = path.join(dataDir, 'FORMAT');
  if (fs.existsSync(formatFile)) {
    let format: unknown;
    try {
      format = (JSON.parse(fs.readFileSync(formatFile, 'utf8')) as { format?: unknown }).format;
    } catch {
      throw failedPrecondition(`data dir ${dataDir}: ${formatFile} is not valid JSON`);
    }
    if (format !== FORMAT_VERSION) {
      throw failedPrecondition(
        `data dir ${dataDir} was written in on-disk format ${String(format)}; this weftd reads format ${FORMAT_VERSION} only`,
      );
    }
    return;
  }
  const metaDir = path.join(dataDir, 'meta');
  const others = fs.readdirSync(dataDir).filter((name) => !['LOCK', 'meta', 'FORMAT.tmp'].includes(name));
  if (others.length > 0 || (fs.existsSync(metaDir) && !isEmptyMetadata(metaDir))) {
    throw failedPrecondition(`data dir ${dataDir} is not empty and has no FORMAT file; is it a Weft data dir?`);
  }
  // Nothing, or what a first start stopped half-way left: an empty catalog.
  fs.rmSync(metaDir, { recursive: true, force: true });
  Metadata.initialize(metaDir);
  writeFileAtomic(formatFile, JSON.stringify({ format: FORMAT_VERSION }) + '\n', dataDir);
}
function isEmptyMetadata(metaDir: string): boolean {
  try {
    const { catalog } = Metadata.open(metaDir).metadata;
    return catalog.layers.length === 0 && catalog.pools.length === 0;
  } catch {
    return fs.readdirSync(metaDir).every((name) => name.startsWith('journal-') || name === 'checkpoint.tmp');
  }
}
