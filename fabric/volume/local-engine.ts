// The storage engine of one node: volumes, snapshots and clones over the node's store (pools and
// metadata, node-store.ts). Each volume is one object with its own stack and quiesce (volume.ts,
// local-replica.ts): a control operation pauses the I/O of the volumes whose layers it changes,
// never the others'. Control operations run one at a time and commit whole (control-txn.ts).

import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, invalidArgument, IoError, notFound, resourceExhausted, WeftError } from '../errors';
import { FIRST_PHYSICAL } from './block-map';
import { Chain } from './chain';
import type { SnapshotRecord, VolumeRecord } from './catalog';
import { ControlTxn, layerById, lineage } from './control-txn';
import { defaultClass } from './default-class';
import { LocalReplica } from './local-replica';
import type { Metadata } from './metadata';
import { validateName } from './names';
import { NodeStore, type NodeStoreOptions } from './node-store';
import {
  BLOCK_BYTES,
  MAX_VOLUME_BYTES,
  CloneVolumeRequest,
  CreateVolumeRequest,
  LayerInfo,
  OpenDevice,
  PoolInfo,
  SnapshotInfo,
  VerifyReport,
  VolumeEngine,
  VolumeInfo,
} from './types';
import { Opener, StackBuilder, Volume, VolumeRef } from './volume';

export { FORMAT_VERSION } from './data-dir';
export { DEFAULT_SYNC_INTERVAL_MS, type PoolSpec } from './node-store';

/** How often the background task looks whether a sync or a checkpoint is due. */
const BACKGROUND_INTERVAL_MS = 1000;
/** After a failed checkpoint (a full metadata disk, say), the next try waits this long. */
const CHECKPOINT_RETRY_MS = 30_000;
const VERIFY_BATCH_BLOCKS = 256;

export interface EngineOptions extends NodeStoreOptions {
  /** Builds each volume's layers above its local replica (the daemon adds metrics); default none. */
  stackFor?: StackBuilder;
}

/** A volume or snapshot object with the catalog record it serves. */
interface Entry<R> {
  volume: Volume;
  record: R;
}

export class LocalEngine implements VolumeEngine {
  private readonly volumes = new Map<string, Entry<VolumeRecord>>();
  /** Snapshot objects, made when a snapshot is first opened; keyed by snapshotKey(). */
  private readonly snapshots = new Map<string, Entry<SnapshotRecord>>();
  private controlChain: Promise<unknown> = Promise.resolve();
  private txn: ControlTxn | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checkpointQueued = false;
  private checkpointRetryAt = 0;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly store: NodeStore,
    private readonly logger: Logger,
    private readonly stackFor: StackBuilder,
  ) {}

  static async open(options: EngineOptions): Promise<LocalEngine> {
    const { store, rolledBack, checked } = await NodeStore.open(options);
    const engine = new LocalEngine(store, options.logger, options.stackFor ?? ((replica) => replica));
    engine.refreshChains();
    engine.timer = setInterval(() => engine.background(), BACKGROUND_INTERVAL_MS);
    engine.timer.unref();
    const { catalog } = store;
    options.logger.info(
      { dataDir: store.dataDir, volumes: catalog.volumes.length, snapshots: catalog.snapshots.length, checked, rolledBack },
      'storage engine open',
    );
    return engine;
  }

  get metadata(): Metadata {
    return this.store.metadata;
  }

  // ---- volumes ----

  createVolume(request: CreateVolumeRequest): Promise<VolumeInfo> {
    return this.control([], async (txn) => {
      validateName('volume', request.name);
      const sizeBytes = this.checkSize(request.sizeBytes);
      const poolClass = this.resolveClass(request.class);
      this.checkFits(poolClass, sizeBytes);
      this.checkNameFree(request.name);
      const layer = txn.newLayer(poolClass, null);
      const record: VolumeRecord = { name: request.name, class: poolClass, sizeBytes, head: layer.id, createdAt: now() };
      txn.catalog.add('volume', record);
      await txn.commit();
      this.logger.info({ volume: record.name, sizeBytes, class: poolClass }, 'volume created');
      return this.volumeInfo(record);
    });
  }

  /** A clone's head may be in another class than the snapshot: its new writes go there. */
  cloneVolume(request: CloneVolumeRequest): Promise<VolumeInfo> {
    return this.control([], async (txn) => {
      validateName('volume', request.name);
      const snapshot = this.findSnapshot(request.volume, request.snapshot);
      const sizeBytes = request.sizeBytes ? this.checkSize(request.sizeBytes) : snapshot.sizeBytes;
      if (sizeBytes < snapshot.sizeBytes) {
        throw invalidArgument(`size ${sizeBytes} is smaller than snapshot ${request.volume}@${request.snapshot} (${snapshot.sizeBytes} bytes)`);
      }
      const poolClass = request.class ? this.resolveClass(request.class) : layerById(this.catalog, snapshot.layer).pool;
      this.checkFits(poolClass, sizeBytes);
      this.checkNameFree(request.name);
      const layer = txn.newLayer(poolClass, snapshot.layer);
      const record: VolumeRecord = {
        name: request.name,
        class: poolClass,
        sizeBytes,
        head: layer.id,
        createdAt: now(),
        sourceSnapshot: `${snapshot.volume}@${snapshot.name}`,
      };
      txn.catalog.add('volume', record);
      await txn.commit();
      this.logger.info({ volume: record.name, source: record.sourceSnapshot, class: poolClass }, 'volume cloned');
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
    return this.control(() => [this.entry(name).volume], async (txn) => {
      const record = this.findVolume(name);
      const newSize = this.checkSize(sizeBytes);
      if (newSize < record.sizeBytes) {
        throw invalidArgument(`volume ${name} is ${record.sizeBytes} bytes; shrinking to ${newSize} is not supported`);
      }
      this.checkFits(record.class, newSize);
      txn.catalog.change('volume', record).sizeBytes = newSize;
      await txn.commit();
      this.logger.info({ volume: name, sizeBytes: newSize }, 'volume resized');
      return this.volumeInfo(record);
    });
  }

  deleteVolume(name: string): Promise<void> {
    return this.control(() => this.sharing(this.findVolume(name).head), async (txn) => {
      const record = this.findVolume(name);
      this.checkUnused(name, 'disconnect them first');
      // Its snapshots stay (as in Kubernetes, a snapshot outlives its volume): they are layers of
      // their own, and dropping the head frees only the blocks written since the last one.
      txn.catalog.remove('volume', record);
      txn.dropLayer(record.head);
      await txn.commit();
      this.logger.info({ volume: name }, 'volume deleted');
    });
  }

  /** Scrubs a volume, or the chain of one of its snapshots. */
  async verifyVolume(name: string, onProgress?: (doneBlocks: number, totalBlocks: number) => void, snapshot?: string): Promise<VerifyReport> {
    // Held open like a connection while it runs, so that the volume is not deleted or reverted under
    // it (its blocks freed and reused would read as false checksum errors).
    const volume = snapshot === undefined ? this.entry(name).volume : this.snapshotEntry(name, snapshot).volume;
    const handle = volume.open({ purpose: 'verify' });
    const replica = volume.replica;
    const totalBlocks = Math.ceil(replica.sizeBytes / BLOCK_BYTES);
    const badBlockOffsets: number[] = [];
    let checkedBlocks = 0;
    try {
      for (let first = 0; first < totalBlocks; first += VERIFY_BATCH_BLOCKS) {
        const end = Math.min(totalBlocks, first + VERIFY_BATCH_BLOCKS);
        for (let b = first; b < end; b++) if (replica.resolve(b) >= FIRST_PHYSICAL) checkedBlocks++;
        badBlockOffsets.push(...(await replica.scrub(first, end)));
        onProgress?.(end, totalBlocks);
      }
    } finally {
      handle.close();
    }
    this.logger.info({ volume: name, snapshot, checkedBlocks, badBlocks: badBlockOffsets.length }, 'volume verified');
    return { volume: name, snapshot, checkedBlocks, badBlockOffsets };
  }

  revertVolume(name: string, snapshotName: string): Promise<VolumeInfo> {
    return this.control(() => this.sharing(this.findVolume(name).head), async (txn) => {
      const record = this.findVolume(name);
      const snapshot = this.findSnapshot(name, snapshotName);
      this.checkUnused(name, 'disconnect them before reverting');
      const oldHead = record.head;
      txn.catalog.change('volume', record);
      record.head = txn.newLayer(record.class, snapshot.layer).id;
      record.sizeBytes = snapshot.sizeBytes;
      txn.dropLayer(oldHead);
      await txn.commit();
      this.logger.info({ volume: name, snapshot: snapshotName }, 'volume reverted');
      return this.volumeInfo(record);
    });
  }

  // ---- snapshots ----

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    return this.control(() => [this.entry(volume).volume], async (txn) => {
      const record = this.findVolume(volume);
      validateName('snapshot', name);
      if (this.catalog.snapshots.some((s) => s.volume === volume && s.name === name)) {
        throw alreadyExists(`snapshot ${volume}@${name} already exists`);
      }
      // The head becomes the snapshot as it is; the volume continues in a new, empty head.
      const frozen = record.head;
      txn.catalog.change('volume', record).head = txn.newLayer(record.class, frozen).id;
      const snapshot: SnapshotRecord = { volume, name, layer: frozen, sizeBytes: record.sizeBytes, createdAt: now() };
      txn.catalog.add('snapshot', snapshot);
      await txn.commit();
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
    return this.control(() => this.sharing(this.findSnapshot(volume, name).layer), async (txn) => {
      const snapshot = this.findSnapshot(volume, name);
      const open = this.snapshots.get(snapshotKey(volume, name));
      if (open && open.volume.connections > 0) {
        throw failedPrecondition(`snapshot ${volume}@${name} is being read by ${open.volume.connections} NBD connection(s)`);
      }
      txn.catalog.remove('snapshot', snapshot);
      txn.catalog.change('layer', layerById(this.catalog, snapshot.layer)).hidden = true;
      txn.collectLayer(snapshot.layer);
      await txn.commit();
      this.logger.info({ volume, snapshot: name }, 'snapshot deleted');
    });
  }

  // ---- pools and I/O ----

  listPools(): PoolInfo[] {
    return this.catalog.pools.map((p) => {
      const pool = this.store.pool(p.class);
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

  openVolume(name: string, opener: Opener = {}): OpenDevice {
    this.checkOpen();
    return this.entry(name).volume.open(opener);
  }

  openSnapshot(volume: string, snapshot: string, opener: Opener = {}): OpenDevice {
    this.checkOpen();
    return this.snapshotEntry(volume, snapshot).volume.open(opener);
  }

  /** Flushes, checkpoints and lets go of the files and the lock, even if the final flush fails. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const final = this.control(() => this.allVolumes(), async () => {
      this.store.closed = true; // I/O waiting at a volume's gate fails once it opens
      await this.store.flushAll();
      await this.store.checkpoint();
    });
    const failure = await final.then(() => undefined, (err: unknown) => err);
    await this.store.close(failure);
    if (failure !== undefined) {
      this.logger.error({ err: failure, dataDir: this.store.dataDir }, 'storage engine closed without its final flush: the next start recovers from the journal');
      throw failure;
    }
    this.logger.info({ dataDir: this.store.dataDir }, 'storage engine closed');
  }

  // ---- internals ----

  private get catalog() {
    return this.store.catalog;
  }

  /**
   * Runs a control operation: one at a time, with the I/O of the volumes it names (computed when it
   * starts) paused and drained, and only theirs. It commits whole or, if it fails, leaves nothing
   * behind (ControlTxn).
   */
  private control<T>(affected: Volume[] | (() => Volume[]), operation: (txn: ControlTxn) => Promise<T>): Promise<T> {
    const run = this.controlChain.then(async () => {
      this.checkOpen();
      const paused = typeof affected === 'function' ? affected() : affected;
      await Promise.all(paused.map((v) => v.replica.quiesce.pause()));
      const txn = new ControlTxn(this.store);
      this.txn = txn;
      try {
        return await operation(txn);
      } catch (err) {
        txn.rollback();
        throw controlFailure(err);
      } finally {
        this.txn = undefined;
        this.refreshChains();
        for (const v of paused) v.replica.quiesce.resume();
      }
    });
    this.controlChain = run.catch(() => undefined);
    return run;
  }

  private checkOpen(): void {
    if (this.store.closed) throw new WeftError('UNAVAILABLE', 'weftd is shutting down');
  }

  /** Every volume and open snapshot whose chain shares a layer with the lineage of layer id. */
  private sharing(id: number): Volume[] {
    const ids = lineage(this.catalog, id);
    return this.allVolumes().filter((v) => v.replica.chain.layers.some((l) => ids.has(l.id)));
  }

  private allVolumes(): Volume[] {
    return [...this.volumes.values(), ...this.snapshots.values()].map((e) => e.volume);
  }

  private background(): void {
    if (this.store.closed) return;
    if (this.store.checkpointDue && !this.checkpointQueued && Date.now() >= this.checkpointRetryAt) {
      // Queued among the control operations, so that a steady stream of them does not put it off.
      this.checkpointQueued = true;
      this.control(() => this.allVolumes(), async () => {
        await this.store.flushAll();
        await this.store.checkpoint();
      })
        .catch((err) => {
          this.checkpointRetryAt = Date.now() + CHECKPOINT_RETRY_MS;
          this.logger.error({ err, retryInSeconds: CHECKPOINT_RETRY_MS / 1000 }, 'checkpoint failed');
        })
        .finally(() => (this.checkpointQueued = false));
    } else if (!this.txn && this.store.syncDue) {
      this.store.flush().catch((err) => this.logger.error({ err }, 'background sync failed'));
    }
  }

  private chainOf(head: number): Chain {
    const layers = [];
    for (let id: number | null = head; id !== null; id = layerById(this.catalog, id).parent) {
      layers.push({ id, map: this.store.metadata.mapOf(id), pool: this.store.pool(layerById(this.catalog, id).pool) });
    }
    return new Chain(layers);
  }

  /**
   * Brings the volume objects in line with the catalog after a control operation (or its undo):
   * new ones made, deleted ones dropped, every chain rebuilt. The chains of volumes the operation
   * did not pause come out as they were.
   */
  private refreshChains(): void {
    for (const [name, entry] of this.volumes) {
      const record = this.catalog.volumes.find((v) => v.name === name);
      if (!record) this.volumes.delete(name);
      else entry.record = record;
    }
    for (const record of this.catalog.volumes) {
      const entry = this.volumes.get(record.name);
      if (entry) entry.volume.replica.chain = this.chainOf(record.head);
      else this.volumes.set(record.name, this.makeEntry({ volume: record.name }, record, record.head));
    }
    for (const [key, entry] of this.snapshots) {
      const record = this.catalog.snapshots.find((s) => snapshotKey(s.volume, s.name) === key);
      if (!record) {
        this.snapshots.delete(key);
      } else {
        entry.record = record;
        entry.volume.replica.chain = this.chainOf(record.layer);
      }
    }
  }

  private makeEntry<R extends { sizeBytes: number }>(ref: VolumeRef, record: R, head: number): Entry<R> {
    const name = ref.snapshot === undefined ? ref.volume : `${ref.volume}@${ref.snapshot}`;
    const entry = { record } as Entry<R>;
    const replica = new LocalReplica(name, this.store, this.chainOf(head), () => entry.record.sizeBytes, ref.snapshot !== undefined);
    entry.volume = new Volume(ref, replica, this.stackFor(replica, ref));
    return entry;
  }

  private entry(name: string): Entry<VolumeRecord> {
    const entry = this.volumes.get(name);
    if (!entry) throw notFound(`volume ${name} does not exist`);
    return entry;
  }

  /** The object of a snapshot, made when it is first opened. */
  private snapshotEntry(volume: string, name: string): Entry<SnapshotRecord> {
    const key = snapshotKey(volume, name);
    let entry = this.snapshots.get(key);
    if (!entry) {
      const record = this.findSnapshot(volume, name);
      entry = this.makeEntry({ volume, snapshot: name }, record, record.layer);
      this.snapshots.set(key, entry);
    }
    return entry;
  }

  private checkUnused(name: string, advice: string): void {
    const connections = this.entry(name).volume.connections;
    if (connections > 0) throw failedPrecondition(`volume ${name} is in use by ${connections} connection(s) (NBD clients or a verify); ${advice}`);
  }

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
      if (!this.store.pools.has(requested)) {
        throw invalidArgument(`no pool of class "${requested}" on this node (pools: ${[...this.store.pools.keys()].join(', ')})`);
      }
      return requested;
    }
    const chosen = defaultClass([...this.store.pools.keys()]);
    if (chosen) return chosen;
    throw invalidArgument(`several pools exist (${[...this.store.pools.keys()].join(', ')}); name one with a class`);
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
    const capacity = this.store.pool(poolClass).totalBlocks * BLOCK_BYTES;
    if (sizeBytes > capacity) {
      throw resourceExhausted(`a volume of ${sizeBytes} bytes does not fit in pool ${poolClass} (${capacity} bytes)`);
    }
  }

  private volumeInfo(record: VolumeRecord): VolumeInfo {
    // A volume made by the running control operation gets its object when the operation ends.
    const volume = this.volumes.get(record.name)?.volume;
    return {
      name: record.name,
      class: record.class,
      sizeBytes: record.sizeBytes,
      allocatedBytes: this.metadata.mapOf(record.head).physicalBlocks * BLOCK_BYTES,
      sourceSnapshot: record.sourceSnapshot,
      snapshotCount: this.catalog.snapshots.filter((s) => s.volume === record.name).length,
      connections: volume?.connections ?? 0,
      checksumErrors: volume?.replica.checksumErrors ?? 0,
      createdAt: record.createdAt,
      layers: this.layersOf(record.head),
    };
  }

  private layersOf(head: number): LayerInfo[] {
    const layers: LayerInfo[] = [];
    for (let id: number | null = head; id !== null; ) {
      const layer = layerById(this.catalog, id);
      const snapshot = this.catalog.snapshots.find((s) => s.layer === id);
      layers.push({
        ...(snapshot && { snapshot: { volume: snapshot.volume, name: snapshot.name } }),
        ...(layer.hidden && { deleted: true }),
        class: layer.pool,
        allocatedBytes: this.store.metadata.mapOf(id).physicalBlocks * BLOCK_BYTES,
      });
      id = layer.parent;
    }
    return layers;
  }

  private snapshotInfo(snapshot: SnapshotRecord): SnapshotInfo {
    return {
      volume: snapshot.volume,
      name: snapshot.name,
      sizeBytes: snapshot.sizeBytes,
      exclusiveBytes: this.metadata.mapOf(snapshot.layer).physicalBlocks * BLOCK_BYTES,
      createdAt: snapshot.createdAt,
      class: layerById(this.catalog, snapshot.layer).pool,
      checksumErrors: this.snapshots.get(snapshotKey(snapshot.volume, snapshot.name))?.volume.replica.checksumErrors ?? 0,
    };
  }
}

function now(): string {
  return new Date().toISOString();
}

function snapshotKey(volume: string, name: string): string {
  return JSON.stringify([volume, name]);
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
