// The default cluster store: one node, the keys in memory and every change in a local file
// (store-log.ts), acknowledged once synced. Leases are timers of this process: when it dies, its
// leases die with it, so the keys they held are deleted when the store is opened again.

import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { invalidArgument } from '../errors';
import type { Logger } from '../logger';
import {
  checkTxnOps, leaseNotFound, StoreCompactedError, StoreLease, StoreUnavailableError,
  type ClusterStore, type KeyValue, type StoreWatch, type Txn, type TxnOp, type TxnResult, type WatchEvent, type WatchOptions,
} from './cluster-store';
import { KvState } from './kv-state';
import { damaged, parseLog, StoreLog, writeSnapshotFile } from './store-log';

export const STORE_FILE = 'cluster-store.log';
const FORMAT = 1;
/** Watches may replay the changes of this many last revisions. */
const HISTORY_REVISIONS = 10_000;

type LogRecord = { snapshot: { format: number; revision: number; keys: KeyValue[] } } | { revision: number; ops: readonly TxnOp[] };

interface Watcher {
  prefix: string;
  onEvent: (event: WatchEvent) => void;
}

export class EmbeddedStore implements ClusterStore {
  private readonly watchers = new Set<Watcher>();
  private readonly leases = new Map<string, EmbeddedLease>();
  private readonly history: { revision: number; events: WatchEvent[] }[] = [];
  private nextLeaseId = 1;
  private closed = false;
  private log!: StoreLog;

  /** historyStart: the oldest revision whose changes a watch can replay. */
  private constructor(private readonly state: KvState, private historyStart: number) {}

  /** Opens DIR/cluster-store.log, or makes it. Refuses a damaged file; drops a torn tail with a warning. */
  static async open(dir: string, logger: Logger): Promise<EmbeddedStore> {
    const file = path.join(dir, STORE_FILE);
    await fs.promises.rm(`${file}.tmp`, { force: true }); // a rewrite that did not finish: the file is whole
    // Made only where there is no such file: not where it cannot be seen (a symlink to a file system
    // not mounted yet, an I/O error), which would start the node on an empty store for good.
    const missing = await fs.promises.lstat(file).then(
      () => false,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return true;
        throw error;
      },
    );
    if (missing) await writeSnapshotFile(file, snapshotRecord(new KvState()));
    const data = await fs.promises.readFile(file);
    const { records, validBytes } = parseLog(data, file);
    const store = EmbeddedStore.replay(records, file);
    const handle = await fs.promises.open(file, 'r+');
    if (validBytes < data.length) {
      // Kept aside: a tail that is not whole is a crash's last write, or damage to the last writes.
      // Not needed to start: a full disk (as after the crash it may have caused) keeps none.
      const kept = await fs.promises.writeFile(`${file}.dropped-tail`, data.subarray(validBytes)).then(
        () => `${file}.dropped-tail`,
        (err: Error) => `none (${err.message})`,
      );
      logger.warn(
        { file, offset: validBytes, bytes: data.length - validBytes, kept },
        'cluster store: dropped the torn tail of the file, the last write of a crash, never synced whole (nothing in it was acknowledged); ' +
          'if weftd did not crash, the end of the file was damaged and changes may be lost: the bytes are kept in the file named `kept`',
      );
      await handle.truncate(validBytes);
      await handle.sync();
    }
    store.log = new StoreLog(file, handle, validBytes, () => snapshotRecord(store.state));
    // The leases of the previous run died with it.
    await store.commit(store.state.leasedKeys().map((key) => ({ type: 'delete', key })));
    return store;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.read(key)).kv;
  }

  async read(key: string): Promise<{ kv: KeyValue | undefined; revision: number }> {
    const found = this.state.get(key);
    const revision = this.state.revision;
    await this.synced();
    return { kv: found && { ...found }, revision };
  }

  async list(prefix: string): Promise<KeyValue[]> {
    const found = this.state.list(prefix).map((entry) => ({ ...entry }));
    await this.synced();
    return found;
  }

  put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    return this.commit([{ type: 'put', key, value, ...options }]);
  }

  async delete(key: string): Promise<boolean> {
    const existed = this.state.get(key) !== undefined;
    await this.commit([{ type: 'delete', key }]);
    return existed;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const ops: TxnOp[] = this.state.list(prefix).map((entry) => ({ type: 'delete', key: entry.key }));
    await this.commit(ops);
    return ops.length;
  }

  async txn(txn: Txn): Promise<TxnResult> {
    checkTxnOps(txn.success);
    checkTxnOps(txn.failure ?? []);
    this.checkOpen();
    // Compares and changes in one synchronous step: nothing can come between them.
    const succeeded = txn.compare.every((compare) => this.state.holds(compare));
    const revision = await this.commit(succeeded ? txn.success : txn.failure ?? []);
    return { succeeded, revision };
  }

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    this.checkOpen();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw invalidArgument(`a lease's TTL is a whole number of seconds, at least 1 (got ${ttlSeconds})`);
    const lease: EmbeddedLease = new EmbeddedLease(String(this.nextLeaseId++), ttlSeconds, () => this.endLease(lease));
    this.leases.set(lease.id, lease);
    return lease;
  }

  async watch(prefix: string, options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<StoreWatch> {
    this.checkOpen();
    const watcher: Watcher = { prefix, onEvent };
    const from = options.fromRevision;
    if (from) {
      if (from < this.historyStart) throw new StoreCompactedError(from, this.historyStart);
      for (const { revision, events } of this.history) if (revision >= from) deliver(watcher, events);
    }
    this.watchers.add(watcher);
    return { close: async () => void this.watchers.delete(watcher) };
  }

  async revision(): Promise<number> {
    const revision = this.state.revision;
    await this.synced();
    return revision;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const lease of this.leases.values()) lease.stop();
    this.leases.clear();
    this.watchers.clear();
    await this.log.close();
  }

  /**
   * Applies ops at once (so that the next txn sees them) and resolves with the revision once they
   * are durable; watchers hear of them only then.
   */
  private async commit(ops: readonly TxnOp[]): Promise<number> {
    this.checkOpen();
    for (const op of ops) if (op.type === 'put' && op.lease !== undefined && !this.leases.has(op.lease)) throw leaseNotFound(op.lease);
    const events = this.state.apply(ops);
    const revision = this.state.revision;
    if (events.length === 0) {
      await this.synced();
      return revision;
    }
    await this.log.append({ revision, ops } satisfies LogRecord);
    this.publish(revision, events);
    return revision;
  }

  private publish(revision: number, events: WatchEvent[]): void {
    this.history.push({ revision, events });
    if (this.history.length > HISTORY_REVISIONS) this.historyStart = this.history.shift()!.revision + 1;
    for (const watcher of this.watchers) deliver(watcher, events);
  }

  /** A lease revoked (no error) or expired: its keys go, in one revision. */
  private async endLease(lease: EmbeddedLease): Promise<void> {
    this.leases.delete(lease.id);
    lease.stop();
    if (!this.closed) await this.commit(this.state.leasedKeys(lease.id).map((key) => ({ type: 'delete', key })));
  }

  /** The state the records describe: a snapshot, then changes at consecutive revisions. */
  private static replay(records: unknown[], file: string): EmbeddedStore {
    const [first, ...changes] = records as LogRecord[];
    if (!first || !('snapshot' in first) || first.snapshot.format !== FORMAT) {
      throw damaged(file, `it does not start with a snapshot of format ${FORMAT}`);
    }
    const { revision, keys } = first.snapshot;
    const state = new KvState(revision, keys);
    // Revision 1 is the empty store (no change is lost); after a rewrite, the changes up to it are.
    const store = new EmbeddedStore(state, revision === 1 ? 1 : revision + 1);
    for (const record of changes) {
      if (!('ops' in record)) throw damaged(file, 'a snapshot comes after changes');
      const events = state.apply(record.ops);
      if (state.revision !== record.revision) throw damaged(file, `revision ${record.revision} does not follow revision ${state.revision - 1}`);
      store.publish(record.revision, events);
    }
    return store;
  }

  private synced(): Promise<void> {
    this.checkOpen();
    return this.log.synced();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('the cluster store is closed');
    this.log.check();
  }
}

/** Calls the watcher after the current call returns, in order; a throwing watcher does not undo a change. */
function deliver(watcher: Watcher, events: readonly WatchEvent[]): void {
  const mine = events.filter((event) => event.key.startsWith(watcher.prefix));
  if (mine.length > 0) queueMicrotask(() => mine.forEach((event) => watcher.onEvent({ ...event })));
}

function snapshotRecord(state: KvState): LogRecord {
  return { snapshot: { format: FORMAT, revision: state.revision, keys: state.entries() } };
}

/** Kept alive by a timer every third of its TTL; a timer that comes too late (a stalled process) finds it expired. */
class EmbeddedLease extends StoreLease {
  private expiresAtMs: number;
  private readonly timer: NodeJS.Timeout;

  constructor(id: string, ttlSeconds: number, private readonly end: () => Promise<void>) {
    super(id, ttlSeconds);
    this.expiresAtMs = performance.now() + ttlSeconds * 1000;
    this.timer = setInterval(() => this.keepAlive(), (ttlSeconds * 1000) / 3).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  protected revokeNow(): Promise<void> {
    return this.end();
  }

  private keepAlive(): void {
    const now = performance.now();
    if (now <= this.expiresAtMs) {
      this.expiresAtMs = now + this.ttlSeconds * 1000;
      return;
    }
    this.lost(new Error(`lease ${this.id} expired: not kept alive for ${Math.round(now - this.expiresAtMs) + this.ttlSeconds * 1000} ms (TTL ${this.ttlSeconds} s)`));
    // Its keys go as if it were revoked; should that fail, the store has failed for good and says so to every caller.
    this.end().catch(() => undefined);
  }
}
