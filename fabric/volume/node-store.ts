// What the volumes of one node truly share: the data dir (its FORMAT and LOCK), the pools, the
// metadata (catalog, block maps, journal), recovery after a crash, and the group commit that makes
// completed writes durable. Volumes, their I/O and their control operations live elsewhere
// (local-replica.ts, local-engine.ts); nothing here pauses I/O.

import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from 'pino';
import { IoError } from '../errors';
import { InFlightWindow } from '../in-flight-window';
import { crc32c } from '../store/checksum';
import { releaseLock, takeLock } from '../store/data-dir-lock';
import { RESOLVED } from '../store/file-io';
import type { Pool } from '../store/pool';
import { FIRST_PHYSICAL } from './block-map';
import type { Catalog } from './catalog';
import { prepareDataDir } from './data-dir';
import { Metadata, OpenedMetadata } from './metadata';
import type { ReplicaHost } from './local-replica';
import { MEMBERS_MADE_FILE, MembersMade, openPools } from './pool-opening';
import { BLOCK_BYTES } from './types';

/** Completed writes become durable at least this often even without a FLUSH (NodeStoreOptions). */
export const DEFAULT_SYNC_INTERVAL_MS = 5000;
/** A checkpoint starts a fresh journal once the journal is this large (NodeStoreOptions). */
export const CHECKPOINT_JOURNAL_BYTES = 64 * 1024 * 1024;

export interface PoolSpec {
  class: string;
  /** A directory (a backing file is created there), an existing file, or a block device. */
  path: string;
  /** Size of the backing file to create in a directory; default: most of the filesystem's free space. */
  sizeBytes?: number;
}

export interface NodeStoreOptions {
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
  /** A checkpoint starts once the journal is this large (default 64 MiB; tests make it small). */
  checkpointJournalBytes?: number;
  /** The most block entries one merge of a deleted snapshot's layer may move (default MAX_MERGE_ENTRIES; tests make it small). */
  maxMergeEntries?: number;
}

/**
 * Every entry a merge moves goes into one journal record (16 bytes each), which must fit in the
 * journal's 256 MiB of unsynced bytes: past that, the node's every write and flush failed until a
 * restart, and the delete again after it. 4 Mi entries is 64 MiB of record, 16 GiB of 4 KiB blocks.
 */
export const MAX_MERGE_ENTRIES = 4 * 1024 * 1024;

/** How many times SLOW_POOL_SYNC_MS a flush waits for pools' syncs when none has ended well. */
const ALONE_PATIENCE = 4;

/**
 * How long a flush waits for a pool's sync once another pool's has ended. A pool still syncing then
 * (a hung disk, or a slow one with much to write back) is left out of the flush's SYNC record, like
 * a failed one, so that the node's other pools need not wait for it: their FLUSHes end, and the
 * writes they vouch for count as durable. The left-out pool's own callers wait on for its sync.
 */
export const SLOW_POOL_SYNC_MS = 500;

/** What one flush made of each pool: the ones that failed their sync, with why, and the ones still syncing (slow). */
interface PoolSyncs {
  failed: ReadonlyMap<string, unknown>;
  /** Each slow pool's sync, which its callers wait for: it still makes their writes durable. */
  slow: ReadonlyMap<string, Promise<void>>;
}

/**
 * Throws why poolClass (or, without it, any pool) failed its sync; with those of them still
 * syncing, a promise of their syncs (no promise made for a flush with no slow pool: most of them).
 */
function requireDurable({ failed, slow }: PoolSyncs, poolClass?: string): Promise<void> | undefined {
  for (const [failedClass, err] of failed) if (poolClass === undefined || failedClass === poolClass) throw err;
  if (slow.size === 0) return undefined;
  if (poolClass !== undefined) return slow.get(poolClass);
  return Promise.all(slow.values()).then(() => undefined);
}

/** The pools a SYNC record leaves out: those not known synced. */
function leftOut({ failed, slow }: PoolSyncs): Set<string> {
  return new Set([...failed.keys(), ...slow.keys()]);
}

export class NodeStore implements ReplicaHost {
  readonly pools = new Map<string, Pool>();
  closed = false;
  /**
   * Each pool's writes in flight, by the sequence number of their first journal record: a write that
   * hangs on one pool's disk holds back the SYNC records of that pool only.
   */
  private readonly inflightWrites = new Map<string, InFlightWindow>();
  /**
   * Pools left out of a flush, with their latest such sync, while it runs: later flushes do not
   * wait for them at all. With when the first of a run of such syncs began (its flush's start).
   */
  private readonly slowSyncs = new Map<string, { sync: Promise<void>; sinceMs: number }>();
  /** Per pool, the SYNC record of its own that waits for its turn (vouchLate), with the highest upTo asked for. */
  private readonly pendingVouches = new Map<string, { upTo: number; done: Promise<void> }>();
  private flushRunning: Promise<PoolSyncs> | undefined;
  private flushQueued: Promise<PoolSyncs> | undefined;
  private syncLane: Promise<unknown> = Promise.resolve();
  private dirty = false;
  private lastSyncAt = Date.now();
  /** The last SYNC record made durable: every journal record up to it counts as durable at recovery. */
  private syncedSeq = 0;

  private constructor(
    readonly dataDir: string,
    readonly metadata: Metadata,
    private readonly logger: Logger,
    readonly syncIntervalMs: number,
    private readonly checkpointJournalBytes: number,
    readonly maxMergeEntries: number,
  ) {}

  /** Takes the data dir's lock, reads its metadata, opens its pools and recovers from a crash. */
  static async open(options: NodeStoreOptions): Promise<{ store: NodeStore; rolledBack: number; checked: number }> {
    const dataDir = path.resolve(options.dataDir);
    fs.mkdirSync(dataDir, { recursive: true });
    takeLock(dataDir);
    let store: NodeStore | undefined;
    try {
      prepareDataDir(dataDir);
      const opened = Metadata.open(path.join(dataDir, 'meta'), options.acceptMetadataLoss);
      const syncIntervalMs = options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
      store = new NodeStore(dataDir, opened.metadata, options.logger, syncIntervalMs, options.checkpointJournalBytes ?? CHECKPOINT_JOURNAL_BYTES, options.maxMergeEntries ?? MAX_MERGE_ENTRIES);
      const pools = openPools(options.pools, store.catalog, new MembersMade(path.join(dataDir, MEMBERS_MADE_FILE)), options.logger);
      for (const [poolClass, pool] of pools.pools) {
        store.pools.set(poolClass, pool);
        store.inflightWrites.set(poolClass, new InFlightWindow());
      }
      store.catalog.pools = pools.records;
      const rolledBack = await store.recover(opened);
      return { store, rolledBack, checked: opened.unsynced.length };
    } catch (err) {
      store?.releaseFiles();
      releaseLock(dataDir);
      throw err;
    }
  }

  get catalog(): Catalog {
    return this.metadata.catalog;
  }

  pool(poolClass: string): Pool {
    const pool = this.pools.get(poolClass);
    if (!pool) throw new Error(`catalog damaged: pool ${poolClass} is not open`);
    return pool;
  }

  // ---- ReplicaHost ----

  writeStarted(seq: number, poolClass: string): void {
    this.inflightWrites.get(poolClass)?.start(seq);
    this.dirty = true;
  }

  writeFinished(seq: number, poolClass: string): void {
    this.inflightWrites.get(poolClass)?.end(seq);
    this.dirty = true; // a flush that began while it was in flight did not cover it
  }

  mapChanged(): void {
    this.dirty = true;
  }

  checksumError(volume: string, offsetBytes: number): void {
    this.logger.error({ volume, offsetBytes }, 'checksum mismatch: block data does not match its checksum');
  }

  readFailed(volume: string, offsetBytes: number, err: Error): void {
    this.logger.error({ volume, offsetBytes, err }, 'a block could not be read: the disk failed the read');
  }

  /**
   * Group commit: callers that arrive while a flush runs share the next one. With poolClass, only
   * that pool's completed writes must be durable: a failed pool fails the flushes of its own
   * volumes, not those of the node's other pools. Without it, every pool's.
   */
  flush(poolClass?: string): Promise<void> {
    return this.sharedFlush().then((syncs) => requireDurable(syncs, poolClass));
  }

  private sharedFlush(): Promise<PoolSyncs> {
    if (this.closed) return Promise.reject(new IoError('ESHUTDOWN', 'weftd is shutting down'));
    if (this.flushQueued) return this.flushQueued;
    if (this.flushRunning) {
      // Queued behind the running flush whether that one succeeds or fails.
      this.flushQueued = this.flushRunning.catch(() => undefined).then(() => {
        this.flushQueued = undefined;
        return this.sharedFlush();
      });
      return this.flushQueued;
    }
    const run = this.inSyncLane(() => this.flushNow()).finally(() => {
      this.flushRunning = undefined;
    });
    this.flushRunning = run;
    return run;
  }

  // ---- for the engine ----

  /**
   * Makes durable every write completed so far: data first, then a SYNC record naming the last
   * journal entry whose data is known written (writes still in flight are not covered), and every
   * record appended before the call. Fails if one of pools failed its sync (or the journal did);
   * waits for the syncs of those of them that are slow, not for the others'.
   */
  flushPools(pools: ReadonlySet<string>): Promise<void> {
    return this.inSyncLane(() => this.flushNow()).then(async (syncs) => {
      for (const poolClass of pools) await requireDurable(syncs, poolClass);
    });
  }

  /** flushPools of every pool. */
  flushAll(): Promise<void> {
    return this.flushPools(new Set(this.pools.keys()));
  }

  /** The pools that refuse writes and flushes until weftd restarts (Pool.lostError). */
  get lostPools(): string[] {
    return [...this.pools.values()].filter((p) => p.lostError).map((p) => p.poolClass);
  }

  /** Whether err is a lost pool's own error, reported (logged) once already when the pool was lost. */
  isLostPoolError(err: unknown): boolean {
    return [...this.pools.values()].some((p) => p.lostError === err);
  }

  /** A background sync is due: writes completed, no FLUSH since, and the interval passed. */
  get syncDue(): boolean {
    return this.dirty && this.syncIntervalMs > 0 && Date.now() - this.lastSyncAt >= this.syncIntervalMs;
  }

  get checkpointDue(): boolean {
    return this.metadata.journalBytes > this.checkpointJournalBytes;
  }

  /** Makes the completed writes of every pool, or of those named, durable. */
  async syncPools(only?: ReadonlySet<string>): Promise<void> {
    await requireDurable(await this.syncEachPool(Number.POSITIVE_INFINITY, only));
  }

  /** Frees recorded at sequence numbers up to upTo become free space (their records are durable), except in the pools named. */
  releaseUpTo(upTo: number, except?: ReadonlySet<string>): void {
    for (const [poolClass, pool] of this.pools) if (!except?.has(poolClass)) pool.allocator.releaseUpTo(upTo);
  }

  /** Writes a checkpoint at once, blocking; only with I/O stopped and everything flushed (close, recovery). */
  checkpoint(): Promise<void> {
    return this.inSyncLane(() => {
      this.metadata.checkpoint();
      for (const pool of this.pools.values()) pool.allocator.releaseAll();
    });
  }

  /**
   * Closes the files and the lock. If the final flush failed (failure set), records still held in
   * memory (trims, say) go to the journal first if it can take them, for the next start to recover.
   */
  async close(failure: unknown): Promise<void> {
    this.closed = true;
    await this.inSyncLane(async () => {
      if (failure !== undefined) await this.metadata.writeOut().catch(() => undefined);
      this.releaseFiles();
    });
    releaseLock(this.dataDir);
  }

  /**
   * Flushes, blocking checkpoints (close, recovery) and closing the files take turns: a flush still
   * running when the files close would fail, and its caller would see an error for a close.
   */
  private inSyncLane<T>(step: () => Promise<T> | T): Promise<T> {
    const run = this.syncLane.then(step);
    this.syncLane = run.catch(() => undefined);
    return run;
  }

  /**
   * The pools that fail their sync, or are slow to (SLOW_POOL_SYNC_MS), are left out of the SYNC
   * record (recovery keeps checking their writes since the last full one) and their frees stay
   * pending; the others' writes are durable all the same. A slow pool whose sync then ends gets a
   * SYNC record of its own (vouchLate). Fails if every pool failed, or the journal did.
   */
  private async flushNow(): Promise<PoolSyncs> {
    const lastSeq = this.metadata.lastSeq;
    const startedMs = performance.now();
    // Per pool, the last record its sync vouches for: none of a write of its still in flight.
    const upToByPool = new Map<string, number>();
    for (const [poolClass, writes] of this.inflightWrites) {
      const oldestWrite = writes.lowest;
      upToByPool.set(poolClass, oldestWrite !== undefined && oldestWrite - 1 < lastSeq ? oldestWrite - 1 : lastSeq);
    }
    this.dirty = false;
    this.lastSyncAt = Date.now();
    let syncs: PoolSyncs;
    let out: Set<string>;
    let upTo = lastSeq;
    try {
      syncs = await this.syncEachPool(SLOW_POOL_SYNC_MS);
      if (syncs.failed.size > 0 && syncs.failed.size === this.pools.size) throw syncs.failed.values().next().value;
      out = leftOut(syncs);
      for (const [poolClass, poolUpTo] of upToByPool) if (!out.has(poolClass)) upTo = Math.min(upTo, poolUpTo);
      this.metadata.recordSync(upTo, out.size > 0 ? [...out] : undefined);
      await this.metadata.sync();
    } catch (err) {
      this.dirty = true;
      throw err;
    }
    if (out.size > 0) this.dirty = true;
    else this.syncedSeq = Math.max(this.syncedSeq, upTo);
    this.releaseUpTo(upTo, out);
    const slow = new Map<string, Promise<void>>();
    for (const [poolClass, sync] of syncs.slow) slow.set(poolClass, this.slowSync(poolClass, sync, upToByPool.get(poolClass) ?? lastSeq, startedMs));
    return { failed: syncs.failed, slow };
  }

  /**
   * Notes a slow pool's sync, which vouches for its writes up to upTo; resolves once it has ended
   * and a SYNC record saying so is durable, so that its caller finds the frees it released (an
   * allocation that waited for a flush to free room). Rejects with the sync's error.
   */
  private slowSync(poolClass: string, sync: Promise<void>, upTo: number, startedMs: number): Promise<void> {
    const entry = { sync, sinceMs: this.slowSyncs.get(poolClass)?.sinceMs ?? startedMs };
    this.slowSyncs.set(poolClass, entry);
    const ended = () => {
      if (this.slowSyncs.get(poolClass) === entry) this.slowSyncs.delete(poolClass);
    };
    const vouched = sync.then(
      () => {
        ended();
        return this.vouchLate(poolClass, upTo);
      },
      (err: unknown) => {
        ended(); // the pool is lost (Pool.markLost): its callers hear why
        throw err;
      },
    );
    vouched.catch(() => undefined); // a flush whose callers are all of other pools awaits it nowhere
    return vouched;
  }

  /** The pools whose sync a flush left out and still runs (a hung or slow disk). */
  get slowPools(): string[] {
    return [...this.slowSyncs.keys()];
  }

  /** The pools with a member whose disk has stopped answering, or nearly (Pool.stalled). */
  get stalledPools(): string[] {
    return [...this.pools.values()].filter((p) => p.stalled).map((p) => p.poolClass);
  }

  /** How long poolClass's syncs have been slow without a break, in ms; 0 if they are not. */
  slowForMs(poolClass: string): number {
    const slow = this.slowSyncs.get(poolClass);
    return slow ? performance.now() - slow.sinceMs : 0;
  }

  /**
   * A slow pool's sync ended after its flush's SYNC record had left it out: a SYNC record for it
   * alone, so that its frees up to upTo become free space (a pool slower than SLOW_POOL_SYNC_MS at
   * every flush would otherwise never free a block) and recovery need not check those writes. The
   * syncs that end before the record takes its turn share it, at the highest upTo. Never rejects:
   * the writes are durable either way.
   */
  private vouchLate(poolClass: string, upTo: number): Promise<void> {
    const pending = this.pendingVouches.get(poolClass);
    if (pending) {
      pending.upTo = Math.max(pending.upTo, upTo);
      return pending.done;
    }
    const vouch = { upTo, done: RESOLVED };
    vouch.done = this.inSyncLane(async () => {
      this.pendingVouches.delete(poolClass); // a sync ending from now on needs a record of its own
      if (this.closed) return;
      const others = [...this.pools.keys()].filter((c) => c !== poolClass);
      this.metadata.recordSync(vouch.upTo, others.length > 0 ? others : undefined);
      await this.metadata.sync();
      this.pools.get(poolClass)?.allocator.releaseUpTo(vouch.upTo);
    }).catch((err: unknown) => {
      this.dirty = true; // a later flush covers it
      this.logger.warn({ err, pool: poolClass }, 'could not record that a slow pool\'s sync ended');
    });
    this.pendingVouches.set(poolClass, vouch);
    return vouch.done;
  }

  /**
   * Syncs every pool (or those in only), each on its own: the ones that failed, with why. With
   * patienceMs, a pool still syncing patienceMs after another pool's sync ended well (or
   * ALONE_PATIENCE times that after the start, if none has) is not waited for, nor at all if an
   * earlier flush found it slow and that sync still runs: it is returned as slow, with its sync.
   */
  private async syncEachPool(patienceMs = Number.POSITIVE_INFINITY, only?: ReadonlySet<string>): Promise<PoolSyncs> {
    const failed = new Map<string, unknown>();
    const running = new Map<string, Promise<void>>();
    let firstSyncedAt: number | undefined;
    let changed = () => undefined as void;
    for (const pool of this.pools.values()) {
      if (only && !only.has(pool.poolClass)) continue;
      const sync = pool.sync();
      running.set(pool.poolClass, sync);
      sync.then(
        () => {
          running.delete(pool.poolClass);
          firstSyncedAt ??= performance.now();
          changed();
        },
        (err: unknown) => {
          running.delete(pool.poolClass);
          failed.set(pool.poolClass, err);
          changed();
        },
      );
    }
    const startedMs = performance.now();
    while (running.size > 0) {
      let patienceLeft = Number.POSITIVE_INFINITY;
      if (patienceMs !== Number.POSITIVE_INFINITY) {
        // With no other pool's sync ended well (a node of one pool, or its others lost), the
        // callers of pools that are done, if any, and those who need no pool (a create's commit)
        // are let go a while later all the same.
        const patientUntil = firstSyncedAt !== undefined ? firstSyncedAt + patienceMs : startedMs + ALONE_PATIENCE * patienceMs;
        const stillSlow = [...running.keys()].every((poolClass) => this.slowSyncs.has(poolClass));
        patienceLeft = stillSlow ? 0 : patientUntil - performance.now();
        if (patienceLeft <= 0) break;
      }
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        changed = resolve;
        if (patienceLeft !== Number.POSITIVE_INFINITY) timer = setTimeout(resolve, patienceLeft);
      });
      clearTimeout(timer);
    }
    return { failed: new Map(failed), slow: new Map(running) };
  }

  /** Frees waiting for records a SYNC has made durable already (frees registered after that flush). */
  releaseSynced(): void {
    this.releaseUpTo(this.syncedSeq);
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
    const poolOf = new Map(this.catalog.layers.map((l) => [l.id, this.pool(l.pool)]));
    let rolledBack = 0;
    for (let i = unsynced.length - 1; i >= 0; i--) {
      const change = unsynced[i];
      const map = this.metadata.maps.get(change.layer);
      if (!map || map.value(change.block) !== change.value || map.crc(change.block) !== change.crc) continue;
      if (change.value < FIRST_PHYSICAL) continue;
      const landed = await poolOf.get(change.layer)!.read(change.value - FIRST_PHYSICAL, buf).then(
        () => crc32c(buf) === change.crc,
        (err: Error) => {
          // A bad sector, often the very write the crash cut short: as if it had not landed, which an
          // unsynced write may not have. Refusing to start would take every volume of the node down.
          this.logger.warn({ err, layer: change.layer, block: change.block }, 'recovery: a block written since the last sync cannot be read; rolled back to what it held before');
          return false;
        },
      );
      if (!landed) {
        map.set(change.block, change.previousValue, change.previousCrc);
        rolledBack++;
      }
    }
    for (const layer of this.catalog.layers) {
      const allocator = poolOf.get(layer.id)!.allocator;
      this.metadata.mapOf(layer.id).forEach((_block, value) => {
        if (value >= FIRST_PHYSICAL) allocator.markUsed(value - FIRST_PHYSICAL);
      });
    }
    // The kept entries may name data that reached only the page cache before the crash: it must be
    // durable before the checkpoint drops the journal, or a power loss now would leave blocks that
    // fail their checksum with no record left to roll them back.
    await this.syncPools();
    await this.checkpoint();
    return rolledBack;
  }

  private releaseFiles(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.metadata.close();
  }
}
