// The storage engine of one node: volumes, snapshots and clones over the node's store (pools and
// metadata, node-store.ts). Each volume is one object with its own stack and quiesce (volume.ts,
// local-replica.ts): a control operation pauses the I/O of the volumes whose layers it changes,
// never the others'. Control operations run one at a time and commit whole (control-txn.ts).

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, InUseError, invalidArgument, notFound, WeftError } from '../errors';
import type { SnapshotRecord, VolumeRecord } from './catalog';
import { CatalogView } from './catalog-view';
import type { EpochFence } from './epoch-fence';
import { controlFailure, ControlTxn, layerById } from './control-txn';
import { VolumeRegistry } from './volume-registry';
import type { Metadata } from './metadata';
import { validateName } from './names';
import { DRAIN_LIMIT_MS } from './quiesce';
import { NodeStore, type NodeStoreOptions } from './node-store';
import { LatencyCounts } from '../latency';
import { withDeadline } from '../deadline';
import {
  BLOCK_BYTES,
  CloneVolumeRequest,
  CreateVolumeRequest,
  OpenDevice,
  PoolInfo,
  SnapshotInfo,
  VerifyReport,
  VolumeEngine,
  VolumeInfo,
} from './types';
import type { OpenHandle, Opener, StackBuilder, Volume } from './volume';

export { FORMAT_VERSION } from './data-dir';
export { DEFAULT_SYNC_INTERVAL_MS, type PoolSpec } from './node-store';

/** How often the background task looks whether a sync or a checkpoint is due. */
const BACKGROUND_INTERVAL_MS = 1000;
/** After a failed checkpoint (a full metadata disk, say), the next try waits this long. */
const CHECKPOINT_RETRY_MS = 30_000;
/** How long a control operation's write-back, before its turn, waits for a pool's sync at most. */
const WRITE_BACK_LIMIT_MS = 10_000;

export interface EngineOptions extends NodeStoreOptions {
  /** Builds each volume's layers above its local replica (the daemon adds metrics); default none. */
  stackFor?: StackBuilder;
}

export class LocalEngine implements VolumeEngine {
  /** How long each checkpoint written while I/O goes on took, from its start to its file written. */
  readonly checkpoints = new LatencyCounts();
  private readonly registry: VolumeRegistry;
  private controlChain: Promise<unknown> = Promise.resolve();
  private txn: ControlTxn | undefined;
  /**
   * Volumes and snapshots (`VOLUME@SNAPSHOT`) being deleted: checked unused, their commit under way.
   * None opens until the control operation has ended and the registry is refreshed (cleared there):
   * a handle opened now would outlive its volume's object, and its writes land on the blocks the
   * delete freed (by then another volume's).
   */
  private readonly deleting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private checkpointing: Promise<void> | undefined;
  private checkpointRetryAt = 0;
  /** Checkpoints held while a pool is lost (said once). */
  private checkpointsHeld = false;
  private closing: Promise<void> | undefined;
  private readonly view: CatalogView;

  private constructor(
    readonly store: NodeStore,
    private readonly logger: Logger,
    stackFor: StackBuilder,
  ) {
    this.registry = new VolumeRegistry(store, stackFor, (volume) => ({
      snapshot: (name) => this.snapshotNow(volume, name),
      resize: (sizeBytes) => this.resizeNow(volume, sizeBytes),
      revert: (snapshot) => this.revertNow(volume, snapshot),
    }));
    this.view = new CatalogView(store, {
      volume: (name) => this.registry.volume(name),
      snapshot: (volume, name) => this.registry.openedSnapshot(volume, name),
    });
  }

  static async open(options: EngineOptions): Promise<LocalEngine> {
    const { store, rolledBack, checked } = await NodeStore.open(options);
    const engine = new LocalEngine(store, options.logger, options.stackFor ?? ((replica) => ({ top: replica, copy: replica })));
    engine.registry.refresh();
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
      const sizeBytes = this.view.checkSize(request.sizeBytes);
      const poolClass = this.view.resolveClass(request.class);
      this.view.checkFits(poolClass, sizeBytes);
      this.view.checkNameFree(request.name);
      const layer = txn.newLayer(poolClass, null);
      const record: VolumeRecord = { name: request.name, class: poolClass, sizeBytes, head: layer.id, createdAt: now() };
      txn.catalog.add('volume', record);
      await txn.commit();
      this.logger.info({ volume: record.name, sizeBytes, class: poolClass }, 'volume created');
      return this.view.volumeInfo(record);
    });
  }

  /** A clone's head may be in another class than the snapshot: its new writes go there. */
  cloneVolume(request: CloneVolumeRequest): Promise<VolumeInfo> {
    return this.control([], async (txn) => {
      validateName('volume', request.name);
      const snapshot = this.view.findSnapshot(request.volume, request.snapshot);
      const sizeBytes = request.sizeBytes ? this.view.checkSize(request.sizeBytes) : snapshot.sizeBytes;
      if (sizeBytes < snapshot.sizeBytes) {
        throw invalidArgument(`size ${sizeBytes} is smaller than snapshot ${request.volume}@${request.snapshot} (${snapshot.sizeBytes} bytes)`);
      }
      const poolClass = request.class ? this.view.resolveClass(request.class) : layerById(this.catalog, snapshot.layer).pool;
      this.view.checkFits(poolClass, sizeBytes);
      this.view.checkNameFree(request.name);
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
      return this.view.volumeInfo(record);
    });
  }

  listVolumes(): VolumeInfo[] {
    const index = this.view.index();
    return this.catalog.volumes.map((v) => this.view.volumeInfo(v, index));
  }

  listNames(): { volumes: string[]; snapshots: { volume: string; snapshot: string }[] } {
    return { volumes: this.catalog.volumes.map((v) => v.name), snapshots: this.catalog.snapshots.map((s) => ({ volume: s.volume, snapshot: s.name })) };
  }

  hasVolume(name: string): boolean {
    return this.catalog.volumes.some((v) => v.name === name);
  }

  /** The volume's epoch fence (epoch-fence.ts). */
  fence(name: string): EpochFence {
    return this.registry.entry(name).volume.fence;
  }

  /** Who has the volume open now. */
  openHandles(name: string): OpenHandle[] {
    return this.registry.entry(name).volume.openHandles;
  }

  getVolume(name: string): VolumeInfo {
    return this.view.volumeInfo(this.view.findVolume(name));
  }

  /** Enters at the top of the volume's stack (as snapshot and revert do), which ends in resizeNow(). */
  async resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    await this.registry.entry(name).volume.top.resize(sizeBytes);
    return this.view.volumeInfo(this.view.findVolume(name));
  }

  /** Refuses, as resizeVolume would, a size the volume cannot take (smaller, or more than its pool); changes nothing. */
  checkResize(name: string, sizeBytes: number): number {
    const record = this.view.findVolume(name);
    const newSize = this.view.checkSize(sizeBytes);
    if (newSize < record.sizeBytes) {
      throw invalidArgument(`volume ${name} is ${record.sizeBytes} bytes; shrinking to ${newSize} is not supported`);
    }
    this.view.checkFits(record.class, newSize);
    return newSize;
  }

  private resizeNow(name: string, sizeBytes: number): Promise<void> {
    return this.control(() => [this.registry.entry(name).volume], async (txn) => {
      const record = this.view.findVolume(name);
      const newSize = this.checkResize(name, sizeBytes);
      txn.catalog.change('volume', record).sizeBytes = newSize;
      await txn.commit();
      this.logger.info({ volume: name, sizeBytes: newSize }, 'volume resized');
    });
  }

  deleteVolume(name: string): Promise<void> {
    return this.control(() => this.registry.sharing(this.view.findVolume(name).head), async (txn) => {
      const record = this.view.findVolume(name);
      this.checkUnused(name, 'disconnect them first');
      this.deleting.add(name);
      // Its snapshots stay (as in Kubernetes, a snapshot outlives its volume): they are layers of
      // their own, and dropping the head frees only the blocks written since the last one.
      txn.catalog.remove('volume', record);
      txn.dropLayer(record.head);
      await txn.commit();
      this.logger.info({ volume: name }, 'volume deleted');
    });
  }

  /** The checksum of each block of the range as the volume reads it (LocalReplica.contentChecksums). */
  blockChecksums(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint32Array> {
    return this.registry.entry(name).volume.replica.contentChecksums(offsetBytes, lengthBytes);
  }

  /** Scrubs a volume, or the chain of one of its snapshots. */
  async verifyVolume(name: string, onProgress?: (doneBlocks: number, totalBlocks: number) => void, snapshot?: string, stop?: AbortSignal): Promise<VerifyReport> {
    // As a client's open: a verify begun while the delete commits would read blocks freed for others.
    this.checkNotDeleting(snapshot === undefined ? name : `${name}@${snapshot}`);
    const volume = snapshot === undefined ? this.registry.entry(name).volume : this.registry.snapshotEntry(name, snapshot).volume;
    const { checkedBlocks, badBlockOffsets } = await volume.verify(onProgress, stop);
    this.logger.info({ volume: name, snapshot, checkedBlocks, badBlocks: badBlockOffsets.length }, 'volume verified');
    return { volume: name, snapshot, checkedBlocks, badBlockOffsets };
  }

  async revertVolume(name: string, snapshotName: string): Promise<VolumeInfo> {
    await this.registry.entry(name).volume.top.revert(snapshotName);
    return this.view.volumeInfo(this.view.findVolume(name));
  }

  private revertNow(name: string, snapshotName: string): Promise<void> {
    return this.control(() => this.registry.sharing(this.view.findVolume(name).head), async (txn) => {
      const record = this.view.findVolume(name);
      const snapshot = this.view.findSnapshot(name, snapshotName);
      // A primary's replication connection to this copy (opened at an epoch) is no client: the
      // primary reverts every copy of a replicated volume with its writes paused.
      this.checkUnused(name, 'disconnect them before reverting', (h) => h.epoch === undefined);
      const oldHead = record.head;
      txn.catalog.change('volume', record);
      record.head = txn.newLayer(record.class, snapshot.layer).id;
      record.sizeBytes = snapshot.sizeBytes;
      txn.dropLayer(oldHead);
      await txn.commit();
      this.logger.info({ volume: name, snapshot: snapshotName }, 'volume reverted');
    });
  }

  // ---- snapshots ----

  async createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    await this.registry.entry(volume).volume.top.snapshot(name);
    return this.view.snapshotInfo(this.view.findSnapshot(volume, name));
  }

  private snapshotNow(volume: string, name: string): Promise<void> {
    return this.control(() => [this.registry.entry(volume).volume], async (txn) => {
      const record = this.view.findVolume(volume);
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
    });
  }

  /** All snapshots, or those of one volume (which may have been deleted since: snapshots outlive it). */
  listSnapshots(volume?: string): SnapshotInfo[] {
    const snapshots = this.catalog.snapshots.filter((s) => volume === undefined || s.volume === volume);
    if (volume !== undefined && snapshots.length === 0) this.view.findVolume(volume);
    const index = this.view.index();
    return snapshots.map((s) => this.view.snapshotInfo(s, index));
  }

  deleteSnapshot(volume: string, name: string): Promise<void> {
    return this.control(() => this.registry.sharing(this.view.findSnapshot(volume, name).layer), async (txn) => {
      const snapshot = this.view.findSnapshot(volume, name);
      const open = this.registry.openedSnapshot(volume, name);
      if (open && open.connections > 0) {
        throw failedPrecondition(`snapshot ${volume}@${name} is being read by ${open.connections} NBD connection(s)`);
      }
      this.deleting.add(`${volume}@${name}`);
      txn.catalog.remove('snapshot', snapshot);
      txn.catalog.change('layer', layerById(this.catalog, snapshot.layer)).hidden = true;
      txn.collectLayer(snapshot.layer);
      await txn.commit();
      this.logger.info({ volume, snapshot: name }, 'snapshot deleted');
      for (const { entries } of txn.mergesLeft) {
        this.logger.warn(
          { volume, snapshot: name, entries, max: this.store.maxMergeEntries },
          'the deleted snapshot stays as a hidden layer, its blocks used, until the volume is deleted or reverted: ' +
            'merging it with the volume would move more block entries than one metadata record holds',
        );
      }
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
        state: pool.lostError ? 'lost' : pool.stalled ? 'stalled' : this.store.slowForMs(p.class) > 0 ? 'slow' : 'ok',
      };
    });
  }

  async raiseEpoch(name: string, epoch: number): Promise<VolumeInfo> {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw invalidArgument(`epoch ${epoch} is not a non-negative integer`);
    const volume = this.registry.entry(name).volume;
    const goesBack = (current: number) => failedPrecondition(`volume ${name} is at epoch ${current}; its epoch cannot go back to ${epoch}`);
    // Refused before the fence closes too: a stale raise must not hold the volume's writes first.
    const before = this.view.findVolume(name).epoch ?? 0;
    if (epoch < before) throw goesBack(before);
    await volume.fence.raising(() =>
      this.control([volume], async (txn) => {
        const record = this.view.findVolume(name);
        const current = record.epoch ?? 0;
        if (epoch < current) throw goesBack(current);
        if (epoch === current) return;
        txn.catalog.change('volume', record).epoch = epoch;
        await txn.commit();
        this.logger.info({ volume: name, epoch, previous: current }, 'volume epoch raised');
      }),
    );
    return this.view.volumeInfo(this.view.findVolume(name));
  }

  openVolume(name: string, opener: Opener = {}): OpenDevice {
    this.checkOpen();
    this.checkNotDeleting(name);
    const { volume, record } = this.registry.entry(name);
    const current = record.epoch ?? 0;
    if (opener.epoch !== undefined && opener.epoch < current) {
      throw failedPrecondition(`volume ${name} is at epoch ${current}; a replication connection at the older epoch ${opener.epoch} is refused`);
    }
    return volume.open(opener);
  }

  openSnapshot(volume: string, snapshot: string, opener: Opener = {}): OpenDevice {
    this.checkOpen();
    this.checkNotDeleting(`${volume}@${snapshot}`);
    return this.registry.snapshotEntry(volume, snapshot).volume.open(opener);
  }

  /** Flushes, checkpoints and lets go of the files and the lock, even if the final flush fails. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.checkpointing;
    // Not a committing control: its write-back before the pause would fail with a pool lost. flushAll
    // syncs, once the I/O is drained, however long that takes: the files are closed next, and a call
    // still in flight could then reach another file opened under the same descriptor number.
    const final = this.inTurn(
      () => this.registry.all(),
      async () => {
        this.store.closed = true; // I/O waiting at a volume's gate fails once it opens
        await this.store.flushAll();
        await this.store.checkpoint();
      },
    );
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
   * behind (ControlTxn). `commits` false: the operation syncs nothing while they are paused.
   */
  private control<T>(affected: Volume[] | (() => Volume[]), operation: (txn: ControlTxn) => Promise<T>, commits = true): Promise<T> {
    const volumes = () => (typeof affected === 'function' ? affected() : affected);
    // The commit syncs the pools with the volumes paused. Writing back what is dirty first, while
    // I/O flows, leaves it only what was written since: a pause of milliseconds, not the write-back
    // of every write since the last sync. It runs before the operation takes its turn: a pool whose
    // disk hangs holds up the operations of its own volumes, not those queued behind them.
    if (!commits) return this.inTurn(volumes, operation, DRAIN_LIMIT_MS);
    return this.writeBack(volumes).then(() => this.inTurn(volumes, operation, DRAIN_LIMIT_MS));
  }

  /**
   * Syncs the pools of the volumes (their heads'), best effort and for WRITE_BACK_LIMIT_MS at most:
   * a failure, or a disk that does not answer, is the commit's to find, if it needs the pool (a
   * delete of a lost pool's volume does not).
   */
  private async writeBack(volumes: () => Volume[]): Promise<void> {
    this.checkOpen();
    let named: Volume[];
    try {
      named = volumes();
    } catch {
      return; // a volume that is not there: the operation itself says so
    }
    if (named.length === 0) return;
    const synced = this.store.syncPools(new Set(named.map((v) => v.replica.chain.head.pool.poolClass)));
    await withDeadline(synced, WRITE_BACK_LIMIT_MS, () => new Error('write-back is late')).catch(() => undefined);
  }

  /**
   * Runs the operation once those before it have ended, with the volumes' I/O paused. If their I/O
   * in flight has not ended within drainLimitMs (a disk that stopped answering), it fails, nothing
   * done, rather than hold up every control operation queued behind it.
   */
  private inTurn<T>(volumes: () => Volume[], operation: (txn: ControlTxn) => Promise<T>, drainLimitMs?: number): Promise<T> {
    const run = this.controlChain.then(async () => {
      this.checkOpen();
      const paused = volumes();
      await pauseDrained(paused, drainLimitMs);
      const txn = new ControlTxn(this.store);
      this.txn = txn;
      try {
        return await operation(txn);
      } catch (err) {
        const undone = await txn.rollback();
        throw controlFailure(err, undone);
      } finally {
        this.txn = undefined;
        this.registry.refresh();
        this.deleting.clear(); // control operations run one at a time: this one's
        for (const v of paused) v.replica.quiesce.resume();
      }
    });
    this.controlChain = run.catch(() => undefined);
    return run;
  }

  private checkNotDeleting(key: string): void {
    if (this.deleting.has(key)) throw notFound(`${key.includes('@') ? 'snapshot' : 'volume'} ${key} is being deleted`);
  }

  private checkOpen(): void {
    if (this.store.closed) throw new WeftError('UNAVAILABLE', 'weftd is shutting down');
  }

  private background(): void {
    if (this.store.closed) return;
    // A checkpoint vouches for every pool: with one lost it would fail at its end, every time,
    // each try leaving a journal behind. The journal grows until weftd restarts.
    const lost = this.store.lostPools;
    if (lost.length > 0 && this.store.checkpointDue && !this.checkpointsHeld) {
      this.checkpointsHeld = true;
      this.logger.error({ pools: lost }, 'checkpoints are held until weftd restarts, as a pool is lost: the journal grows meanwhile');
    }
    // Nor while a pool's disk is not answering: the cut pauses every volume until its writes in
    // flight end (DRAIN_LIMIT_MS at most), and a hung disk's never would.
    const held = lost.length > 0 || this.store.slowPools.length > 0 || this.store.stalledPools.length > 0;
    if (this.store.checkpointDue && !held && !this.checkpointing && Date.now() >= this.checkpointRetryAt) {
      this.checkpointing = this.checkpointLive()
        .catch((err) => {
          this.checkpointRetryAt = Date.now() + CHECKPOINT_RETRY_MS;
          this.logger.error({ err, retryInSeconds: CHECKPOINT_RETRY_MS / 1000 }, 'checkpoint failed');
        })
        .finally(() => (this.checkpointing = undefined));
    } else if (!this.txn && this.store.syncDue) {
      this.store.flush().catch((err) => this.store.isLostPoolError(err) || this.logger.error({ err }, 'background sync failed'));
    }
  }

  /**
   * A checkpoint while I/O goes on. Only its cut pauses I/O, on every volume, for as long as the
   * writes in flight take to finish plus O(map chunks): it is queued among the control operations
   * (none may be half-applied at the cut, and a steady stream of them does not put it off). The
   * state at the cut is then written out while I/O continues.
   */
  private async checkpointLive(): Promise<void> {
    const { metadata } = this.store;
    await metadata.prepareCheckpoint();
    const started = performance.now();
    let drainedAt = 0;
    const cut = await this.control(
      () => this.registry.all(),
      async () => {
        drainedAt = performance.now();
        return metadata.startCheckpoint();
      },
      false, // the cut syncs nothing: no write-back first
    );
    const resumedAt = performance.now();
    await cut.finish(() => this.store.syncPools());
    this.store.releaseUpTo(cut.cutSeq);
    this.checkpoints.record((performance.now() - started) / 1000);
    const ms = (from: number, to: number) => Math.round((to - from) * 100) / 100;
    // I/O was paused for the drain of the writes in flight plus the cut.
    this.logger.info({ drainMs: ms(started, drainedAt), cutMs: ms(drainedAt, resumedAt), writtenMs: ms(started, performance.now()) }, 'checkpoint written');
  }

  /** Refuses, naming who holds it open, a volume with open handles (those that counts, when given). */
  private checkUnused(name: string, advice: string, counts: (handle: OpenHandle) => boolean = () => true): void {
    const handles = this.openHandles(name).filter(counts);
    if (handles.length === 0) return;
    const who = handles.map((h) => `${h.peer ? `NBD client ${h.peer}` : (h.purpose ?? 'a handle')}${h.attachment ? ` (${h.attachment})` : ''} since ${h.openedAt}`);
    // A verify is no connection to close: it runs to its end, or until its caller goes away.
    const verifying = handles.some((h) => h.purpose === 'verify') ? '; a verify ends when it is done or its caller stops it (Ctrl-C): try again then' : '';
    throw new InUseError(`volume ${name} is in use by ${handles.length} connection(s): ${who.join(', ')}; ${advice}${verifying}`);
  }
}

/**
 * Pauses the volumes' I/O and waits until what is in flight has ended; if that takes longer than
 * limitMs (none: no limit), resumes them and fails, naming the volumes still busy.
 */
async function pauseDrained(volumes: Volume[], limitMs?: number): Promise<void> {
  const drained = Promise.all(volumes.map((v) => v.replica.quiesce.pause()));
  if (limitMs === undefined) return void (await drained);
  const late = () => {
    const named = volumes.filter((v) => v.replica.quiesce.busy);
    const busy = (named.length > 0 ? named : volumes).map((v) => (v.ref.snapshot === undefined ? v.ref.volume : `${v.ref.volume}@${v.ref.snapshot}`));
    return new WeftError('UNAVAILABLE', `volume ${busy.join(', ')}: I/O in flight has not ended within ${limitMs / 1000} s (its pool's disk may have stopped answering); nothing changed, try again later`);
  };
  try {
    await withDeadline(drained, limitMs, late);
  } catch (err) {
    for (const v of volumes) v.replica.quiesce.resume();
    throw err;
  }
}

function now(): string {
  return new Date().toISOString();
}
