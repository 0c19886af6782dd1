// The cluster store on a real etcd cluster (v3 API, through the etcd3 client): etcd's own
// transactions, leases and watches, under the key prefix "weft/". Every call has a deadline.

import { performance } from 'node:perf_hooks';
import type { Metadata } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { circuitBreaker, ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, handleWhen, noop, retry } from 'cockatiel';
import {
  Etcd3, EtcdLeaseInvalidError, isRecoverableError,
  type ICompare, type IDuplexStream, type IKeyValue, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse, type IRequestOp, type Namespace, type Watcher,
} from 'etcd3';
import { withDeadline } from '../deadline';
import { invalidArgument } from '../errors';
import {
  checkTxnOps, leaseNotFound, StoreCompactedError, StoreLease, StoreUnavailableError,
  type ClusterStore, type Compare, type KeyValue, type StoreWatch, type Txn, type TxnOp, type TxnResult, type WatchEvent, type WatchOptions,
} from './cluster-store';

/** A connection to etcd is pinged this often while it carries calls or streams, and given up on when a ping is not answered within KEEPALIVE_TIMEOUT_MS. */
const KEEPALIVE_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5000;
const ROOT = 'weft/';
const DEFAULT_TIMEOUT_MS = 5000;

const TARGETS = { value: 'Value', createRevision: 'Create', modRevision: 'Mod', version: 'Version' } as const;
const RESULTS = { '=': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const;

/**
 * A call is retried (on the next member, after a pause that lets an election end) only when it
 * cannot have reached etcd's log: no connection, no leader, proposal dropped. As in etcd's own Go
 * client: a retried transaction could otherwise report "failed" for a change it made.
 */
const notApplied = (error: Error) => /No connection established|ECONNREFUSED|etcdserver: no leader|raft proposal dropped/.test(error.message);
const RETRY_PAUSE_MS = 200;

/**
 * How soon a node that lost etcd (a partition, a restarted member) tries again: at most this long
 * after etcd is back, its calls, watches and lease go through. The etcd3 client's defaults (a host
 * shut out for 5 s after 3 failures, watches reconnected after up to 30 s, gRPC's reconnect backoff
 * up to 120 s) left a healed node blind for 8-15 s: it kept forwarding its clients' writes to a
 * primary that had died meanwhile, far past the 5 s failover target.
 */
const RECONNECT_MAX_MS = 1000;

const GRPC_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': RECONNECT_MAX_MS,
  // A member that went silent (powered off, frozen, cut off by the network) gives no error:
  // without pings a watch on it would wait for its events for good, and this node would
  // never hear of a lease lapsing there. Pinged while calls or streams are open, no more
  // often than etcd allows (--grpc-keepalive-min-time, 5 s).
  'grpc.keepalive_time_ms': KEEPALIVE_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
};

export class EtcdStore implements ClusterStore {
  private readonly kv: Namespace;
  private readonly leases = new Set<EtcdLease>();
  private readonly watchers = new Set<Watcher>();
  /** One client per member, for lease keepalives (see EtcdLease); made with the first lease. */
  private members?: Etcd3[];

  private constructor(private readonly client: Etcd3, private readonly endpoints: string[], private readonly timeoutMs: number) {
    this.kv = client.namespace(ROOT);
  }

  /** Connects to endpoints ("HOST:PORT") and checks that etcd answers; throws StoreUnavailableError otherwise. */
  static async open(endpoints: string[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<EtcdStore> {
    const client = new Etcd3({
      hosts: endpoints.map((endpoint) => `http://${endpoint}`),
      // Streams (watches) live on; single calls get a deadline.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeoutMs }),
      faultHandling: {
        global: retry(handleWhen(notApplied), { maxAttempts: 2 * endpoints.length, backoff: new ConstantBackoff(RETRY_PAUSE_MS) }),
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: RECONNECT_MAX_MS, breaker: new ConsecutiveBreaker(3) }),
        // etcd3 takes a backoff's first step, and steps from it (next()) on each reconnection.
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: RECONNECT_MAX_MS }).next(),
      },
      grpcOptions: GRPC_OPTIONS,
    });
    requireLeader(client);
    const store = new EtcdStore(client, endpoints, timeoutMs);
    try {
      await store.revision();
    } catch (error) {
      client.close();
      throw error;
    }
    return store;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.read(key)).kv;
  }

  async read(key: string): Promise<{ kv: KeyValue | undefined; revision: number }> {
    const { kvs, header } = await this.call(() => this.kv.get(key).exec());
    return { kv: kvs.length === 0 ? undefined : keyValue(kvs[0], key), revision: Number(header.revision) };
  }

  async list(prefix: string): Promise<KeyValue[]> {
    const { kvs } = await this.call(() => this.kv.getAll().prefix(prefix).sort('Key', 'Ascend').exec());
    return kvs.map((kv) => keyValue(kv, kv.key.toString()));
  }

  async put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    const put = this.kv.put(key).value(value);
    if (options.lease !== undefined) put.lease(options.lease);
    const { header } = await this.call(() => put.exec(), options.lease);
    return Number(header.revision);
  }

  async delete(key: string): Promise<boolean> {
    const { deleted } = await this.call(() => this.kv.delete().key(key).exec());
    return deleted !== '0';
  }

  async deletePrefix(prefix: string): Promise<number> {
    const { deleted } = await this.call(() => this.kv.delete().prefix(prefix).exec());
    return Number(deleted);
  }

  async txn(txn: Txn): Promise<TxnResult> {
    checkTxnOps(txn.success);
    checkTxnOps(txn.failure ?? []);
    const lease = [...txn.success, ...(txn.failure ?? [])].find((op) => op.type === 'put' && op.lease !== undefined);
    const response = await this.call(
      () => this.client.kv.txn({ compare: txn.compare.map(compare), success: txn.success.map(requestOp), failure: (txn.failure ?? []).map(requestOp) }),
      lease?.type === 'put' ? lease.lease : undefined,
    );
    return { succeeded: response.succeeded, revision: Number(response.header.revision) };
  }

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw invalidArgument(`a lease's TTL is a whole number of seconds, at least 1 (got ${ttlSeconds})`);
    const askedAtMs = performance.now();
    const { ID: id } = await this.call(() => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    const revoke = () => this.client.leaseClient.leaseRevoke({ ID: id }).then(() => undefined);
    const granted = new EtcdLease(id, ttlSeconds, this.memberClients(), revoke, askedAtMs, (lease) => this.leases.delete(lease));
    this.leases.add(granted);
    return granted;
  }

  async watch(prefix: string, options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<StoreWatch> {
    const from = options.fromRevision;
    if (from) await this.checkHistory(prefix, from);
    const builder = this.kv.watch().prefix(prefix);
    if (from) builder.startRevision(String(from));
    const watcher = builder.watcher();
    this.watchers.add(watcher);
    // Nothing is heard of a watch once it is closed: its owner reads afresh and watches anew, and a
    // close that could not reach etcd leaves the old one to come back with the stream.
    let open = true;
    watcher.on('put', (kv) => open && onEvent({ type: 'put', key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) }));
    watcher.on('delete', (kv) => open && onEvent({ type: 'delete', key: kv.key.toString(), modRevision: Number(kv.mod_revision) }));
    // Once, and within the deadline: etcd3's cancel waits for an answer that never comes for a watch
    // etcd has cancelled itself (compaction), or one it is re-creating after a reconnection. One
    // whose cancel did not settle is cancelled again when the store closes.
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        open = false;
        const cancelled = await this.deadline(watcher.cancel(), 'closing a watch').then(() => true, () => false);
        if (cancelled) this.watchers.delete(watcher);
      })());
    try {
      await this.deadline(new Promise((resolve, reject) => watcher.once('connected', resolve).once('error', reject)), 'starting a watch');
    } catch (error) {
      await close();
      throw this.unavailable(error as Error);
    }
    watcher.on('error', (error) => open && options.onError?.(error));
    // On reconnecting, etcd3 moves a watch's resume point to the revision etcd confirms it at, before
    // etcd has replayed what changed meanwhile: a stream that broke again in between would skip those
    // changes without a word. So a watch that disconnects ends here, and its owner reads afresh.
    watcher.once('disconnected', (error: Error | undefined) =>
      open && options.onError?.(this.unavailable(new Error(`the watch of ${prefix} was disconnected${error ? `: ${error.message}` : ''}`))),
    );
    return { close };
  }

  async revision(): Promise<number> {
    const { header } = await this.call(() => this.client.kv.range({ key: Buffer.from(ROOT), count_only: true }));
    return Number(header.revision);
  }

  /** The version of etcd, as the member that answers tells it ("3.5.17"). */
  async version(): Promise<string> {
    return (await this.call(() => this.client.maintenance.status())).version;
  }

  async close(): Promise<void> {
    for (const lease of this.leases) lease.release();
    for (const member of this.members ?? []) member.close();
    // Cancelled first: a watch left open retries forever on a closed client.
    await Promise.all([...this.watchers].map((watcher) => this.deadline(watcher.cancel(), 'closing a watch').catch(() => undefined)));
    this.client.close();
  }

  /** Clients bound to one member each, whose every call (streams too) ends within the store's deadline: no retries, no host shut out. */
  private memberClients(): Etcd3[] {
    // Not requireLeader: a keepalive refused at once during an election (by every member alike)
    // would lose the node lease over a second's campaign; one that waits is carried to the new leader.
    this.members ??= this.endpoints.map(
      (endpoint) =>
        new Etcd3({
          hosts: `http://${endpoint}`,
          defaultCallOptions: () => ({ deadline: Date.now() + this.timeoutMs }),
          faultHandling: { global: noop, host: () => noop },
          grpcOptions: GRPC_OPTIONS,
        }),
    );
    return this.members;
  }

  /** etcd answers a read at a compacted revision with an error, and a watch from it by cancelling it. */
  private async checkHistory(prefix: string, from: number): Promise<void> {
    try {
      await this.call(() => this.kv.getAll().prefix(prefix).revision(from).count());
    } catch (error) {
      if (/compacted/.test((error as Error).message)) throw new StoreCompactedError(from);
      if (!/future revision/.test((error as Error).message)) throw error;
    }
  }

  private async call<T>(operation: () => Promise<T>, lease?: string): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError && lease !== undefined) throw leaseNotFound(lease);
      throw this.unavailable(error as Error);
    }
  }

  /** etcd's own errors (compacted, too many operations, ...) pass as they are; failures to reach it say so. */
  private unavailable(error: Error): Error {
    // A leader change or a stopping member: the request may have committed or not, as when etcd
    // does not answer at all (the caller settles which).
    if (/etcdserver:|mvcc:/.test(error.message) && !/no leader|timed out|leader changed|server stopped|request cancelled/.test(error.message)) return error;
    return new StoreUnavailableError(`etcd at ${this.endpoints.join(',')} did not answer: ${error.message}`);
  }

  private deadline<T>(promise: Promise<T>, what: string): Promise<T> {
    return withDeadline(promise, this.timeoutMs, () => new Error(`${what} took more than ${this.timeoutMs} ms`));
  }
}

/**
 * Whether etcd of this version revokes every lease when a leader that stalled (a slow disk, a paused
 * VM) for longer than a lease wakes, whatever the holders did: etcd issue 15247, fixed in 3.4.31 and
 * 3.5.13. Nodes then show down, and the volumes whose primaries they hold fail over.
 */
export function revokesLeasesAfterLeaderStall(version: string): boolean {
  const [major, minor, patch] = version.split('.').map(Number);
  if (major !== 3 || Number.isNaN(patch)) return false; // unknown: not warned of
  return minor < 4 || (minor === 4 && patch < 31) || (minor === 5 && patch < 13);
}

function keyValue(kv: IKeyValue, key: string): KeyValue {
  return {
    key,
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    ...(kv.lease === '0' ? {} : { lease: kv.lease }),
  };
}

const etcdKey = (key: string) => Buffer.from(ROOT + key);

function compare(condition: Compare): ICompare {
  const common = { key: etcdKey(condition.key), target: TARGETS[condition.target], result: RESULTS[condition.op] };
  switch (condition.target) {
    case 'value':
      return { ...common, value: Buffer.from(condition.value) };
    case 'createRevision':
      return { ...common, create_revision: condition.value };
    case 'modRevision':
      return { ...common, mod_revision: condition.value };
    case 'version':
      return { ...common, version: condition.value };
  }
}

function requestOp(op: TxnOp): IRequestOp {
  if (op.type === 'delete') return { request_delete_range: { key: etcdKey(op.key) } };
  return { request_put: { key: etcdKey(op.key), value: Buffer.from(op.value), ...(op.lease === undefined ? {} : { lease: op.lease }) } };
}

/** Sends one keepalive for lease id on stream; resolves with the TTL etcd renewed it to, 0 if etcd no longer has the lease. */
function answerOf(stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>, id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    stream.on('data', (response: ILeaseKeepAliveResponse) => {
      stream.end();
      resolve(Number(response.TTL));
    });
    stream.on('error', reject);
    stream.on('end', () => reject(new Error('the keepalive stream ended without an answer')));
    stream.write({ ID: id });
  });
}

/**
 * A lease kept alive every third of its TTL, as etcd's own Go client does, by this process rather
 * than etcd3's Lease: that sends every keepalive over one stream to one member, and a member that
 * stalls (a long fsync, a paused VM) answers nothing and passes nothing on to the leader, so the
 * lease lapsed for real within a TTL and healthy volumes failed over. Here a keepalive goes to the
 * member that answered the latest keepalive first, and to every other member too if it is not
 * answered within a third of the interval (or fails). The holder is told it lost the lease when etcd
 * says it has none, or as soon as no keepalive has been confirmed for a TTL: etcd may have expired it
 * then, and a holder that went on would act on a lease that another node may already hold.
 */
class EtcdLease extends StoreLease {
  private aliveUntilMs: number;
  private expiryTimer?: NodeJS.Timeout;
  private readonly ticker: NodeJS.Timeout;
  /** Index in members of the member that answered the latest keepalive first: keepalives go there first. */
  private preferred = 0;
  private preferredTick = 0;
  private ticks = 0;
  /** Keepalive calls under way: a lease given up cancels them, as one still on its way would renew it. */
  private readonly calls = new Set<{ cancel(): void }>();
  private stopped = false;

  constructor(
    id: string,
    ttlSeconds: number,
    private readonly members: Etcd3[],
    private readonly revokeLease: () => Promise<void>,
    askedAtMs: number,
    private readonly forget: (lease: EtcdLease) => void,
  ) {
    super(id, ttlSeconds);
    this.aliveUntilMs = askedAtMs + ttlSeconds * 1000;
    const intervalMs = (ttlSeconds * 1000) / 3;
    this.ticker = setInterval(() => void this.keepalive(intervalMs / 3), intervalMs).unref();
    // At once, too: a grant that took long leaves less than a TTL before the first confirmation.
    void this.keepalive(intervalMs / 3);
    this.check();
  }

  /** Stops keeping the lease alive; it expires at its TTL. */
  release(): void {
    this.stopped = true;
    clearInterval(this.ticker);
    clearTimeout(this.expiryTimer);
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    this.forget(this);
  }

  protected async revokeNow(): Promise<void> {
    this.release();
    try {
      await this.revokeLease();
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) return; // gone already
      throw new StoreUnavailableError(`revoking lease ${this.id}: ${(error as Error).message}`);
    }
  }

  private async keepalive(hedgeAfterMs: number): Promise<void> {
    const sentAtMs = performance.now();
    const tick = ++this.ticks;
    const through = (index: number) =>
      this.keepaliveThrough(index).then(
        (ttl) => {
          this.confirmed(sentAtMs, ttl);
          if (ttl > 0 && tick > this.preferredTick) [this.preferred, this.preferredTick] = [index, tick];
          return true;
        },
        () => false,
      );
    const first = this.preferred;
    const answered = await Promise.race([through(first), sleep(hedgeAfterMs, false, { ref: false })]);
    if (answered || this.stopped) return;
    for (let index = 0; index < this.members.length; index++) if (index !== first) void through(index);
  }

  /** One keepalive through one member; its client's call options bound the wait. */
  private async keepaliveThrough(index: number): Promise<number> {
    const stream = await this.members[index].leaseClient.leaseKeepAlive();
    if (this.stopped) {
      stream.cancel();
      throw new Error(`lease ${this.id} was given up`);
    }
    this.calls.add(stream);
    try {
      return await answerOf(stream, this.id);
    } finally {
      this.calls.delete(stream);
    }
  }

  /** A keepalive sent at sentAtMs was answered: etcd renewed the lease from no earlier than then. */
  private confirmed(sentAtMs: number, ttl: number): void {
    if (this.stopped) return;
    if (ttl <= 0) this.lose(leaseNotFound(this.id));
    else this.aliveUntilMs = Math.max(this.aliveUntilMs, sentAtMs + this.ttlSeconds * 1000);
  }

  private check(): void {
    const leftMs = this.aliveUntilMs - performance.now();
    if (leftMs <= 0) {
      this.lose(new StoreUnavailableError(`lease ${this.id}: etcd confirmed no keepalive for ${this.ttlSeconds} s (its TTL); it may have expired`));
      return;
    }
    this.expiryTimer = setTimeout(() => this.check(), leftMs).unref();
  }

  private lose(error: Error): void {
    this.release();
    this.lost(error);
  }
}

/**
 * Has etcd serve the store's calls (the keepalives aside: memberClients) only on a member that has a
 * leader (gRPC metadata "hasleader: true", as etcd's Go client sends with WithRequireLeader).
 * Without it, a member cut off from the others answers its clients on: a watch through it goes
 * silent without ending (the node misses a primary's death: no failover while it lasts), and single
 * calls wait out their deadline. With it, etcd refuses new calls there at once and ends the watches
 * after a few election timeouts, and the store's owners read again and watch anew through another
 * member. etcd3 has no option for it: the metadata every call takes is extended where etcd3 makes
 * it (its connection pool's authenticator, etcd3 1.1).
 */
function requireLeader(client: Etcd3): void {
  const authenticator = (client as unknown as { pool?: { authenticator?: { getMetadata?: () => Promise<Metadata> } } }).pool?.authenticator;
  const getMetadata = authenticator?.getMetadata?.bind(authenticator);
  if (!authenticator || !getMetadata) throw new Error('etcd3 has changed: its connection pool has no authenticator to carry "hasleader" (see requireLeader)');
  authenticator.getMetadata = async () => {
    const metadata = (await getMetadata()).clone();
    metadata.set('hasleader', 'true');
    return metadata;
  };
}
