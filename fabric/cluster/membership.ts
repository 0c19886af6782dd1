// Membership: every node registers itself in the cluster store, with its address, zone and pools,
// and shows that it is alive with a key that lives on a lease. A node whose lease lapses (it died,
// or lost the store) is down to every other node within NODE_LEASE_SECONDS; its registration stays,
// so that `weft node list` still shows it, as down.

import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition } from '../errors';
import type { Logger } from '../logger';
import type { ClusterStore, KeyValue, StoreLease } from './cluster-store';
import { parseObject } from './volume-record';

/** A node is shown down about this long after it died (the store then notices that the lease lapsed: 5.5-6 s measured on etcd with 5 s). Its primary leases lapse with it, so this bounds the failover time. */
export const NODE_LEASE_SECONDS = 3;
/** How often a node refreshes its registration (free space changes). */
const REFRESH_MS = 10_000;
/** After losing its lease, a node tries to come back this often. */
const REJOIN_MS = 1_000;
export const NODES = 'nodes/';
export const ALIVE = 'alive/';

export interface PoolSummary {
  class: string;
  capacityBytes: number;
  usedBytes: number;
  provisionedBytes: number;
}

/** A node's registration, kept in the store while the node is down too. */
export interface NodeRecord {
  id: string;
  /** The address other nodes and clients use (weftd --advertise). */
  address: string;
  zone?: string;
  nbdPort: number;
  apiPort: number;
  version: string;
  pools: PoolSummary[];
  /** How many volumes the node holds a copy of. */
  volumes: number;
  /**
   * The volumes it holds alone (not copies of the cluster's), as of updatedAt: while it is down, a
   * volume of the cluster is not made under one of their names (it would take that volume over when
   * the node is back). Absent from nodes of earlier versions.
   */
  ownVolumes?: string[];
  /** ISO 8601: when the registration was last written. */
  updatedAt: string;
}

/** The key that says a node is up, on its lease: which process holds it. */
interface Alive {
  instance: string;
  startedAt: string;
}

export interface ClusterNode extends NodeRecord {
  state: 'up' | 'down';
}

/**
 * Every registered node, with whether its lease is alive, sorted by id. A registration that is none
 * (a hand edit, a bug of another version) is left out, and told to onMalformed: one would otherwise
 * stop every node's view of the cluster, and with it every failover.
 */
export async function listNodes(store: ClusterStore, onMalformed: (kv: KeyValue) => void = () => undefined): Promise<ClusterNode[]> {
  const [records, alive] = await Promise.all([store.list(NODES), store.list(ALIVE)]);
  const up = new Set(alive.map((kv) => kv.key.slice(ALIVE.length)));
  return records.flatMap((kv) => {
    const record = parseNodeRecord(kv);
    if (!record) {
      onMalformed(kv);
      return [];
    }
    return [{ ...record, state: up.has(record.id) ? 'up' : 'down' }];
  });
}

function parseNodeRecord(kv: KeyValue): NodeRecord | undefined {
  const record = parseObject(kv.value) as Partial<NodeRecord> | undefined;
  const isPool = (p: Partial<PoolSummary> | null) => p !== null && typeof p === 'object' && typeof p.class === 'string' && typeof p.capacityBytes === 'number' && typeof p.usedBytes === 'number';
  const valid =
    record !== undefined && record.id === kv.key.slice(NODES.length) && typeof record.address === 'string' &&
    typeof record.nbdPort === 'number' && typeof record.apiPort === 'number' && Array.isArray(record.pools) && record.pools.every(isPool);
  return valid ? (record as NodeRecord) : undefined;
}

export class Membership {
  private lease: StoreLease | undefined;
  private readonly instance = crypto.randomUUID();
  private readonly startedAt = new Date().toISOString();
  private refreshTimer: NodeJS.Timeout | undefined;
  private left = false;
  /** The own volumes of the registration last written (JSON). */
  private registeredOwn: string | undefined;
  private readonly leaseListeners: ((leaseId: string | null) => void)[] = [];

  private constructor(
    private readonly store: ClusterStore,
    private readonly nodeId: string,
    private readonly describe: () => Omit<NodeRecord, 'updatedAt'>,
    private readonly logger: Logger,
  ) {}

  /**
   * Registers the node and marks it up. If another process holds the node's id (a weftd with the
   * same --node-id, or this node's previous run whose lease has not lapsed yet after a crash), waits
   * up to one lease for it to lapse, then refuses.
   */
  static async join(store: ClusterStore, describe: () => Omit<NodeRecord, 'updatedAt'>, logger: Logger): Promise<Membership> {
    const membership = new Membership(store, describe().id, describe, logger);
    await membership.register(Date.now() + (NODE_LEASE_SECONDS + 2) * 1000);
    membership.refreshTimer = setInterval(() => void membership.refresh(), REFRESH_MS).unref();
    return membership;
  }

  /** Tells listener the node's lease id now, and again whenever it is lost (null) or granted anew. */
  onLease(listener: (leaseId: string | null) => void): void {
    this.leaseListeners.push(listener);
    listener(this.lease?.id ?? null);
  }

  /**
   * Marks the node down at once (revokes its lease) and stops refreshing; the registration stays,
   * naming its own volumes as they are now: while it is down, nothing else tells where they are (the
   * CSI controller's DeleteVolume of one waits for the node).
   */
  async leave(): Promise<void> {
    if (JSON.stringify(this.describe().ownVolumes) !== this.registeredOwn) await this.refresh();
    this.left = true;
    clearInterval(this.refreshTimer);
    await this.lease?.revoke();
  }

  private async register(deadline: number): Promise<void> {
    const lease = await this.store.grantLease(NODE_LEASE_SECONDS);
    try {
      await this.claimAlive(lease, deadline);
    } catch (err) {
      // Also when the store failed to answer a claim it may have committed: kept alive, this lease
      // would hold this node's alive key for ever, and every later try find the node "already up".
      // Not waited for: the store may be out of reach; the keepalives stop at once all the same, and
      // a lease the revoke does not reach expires at its TTL.
      void lease.revoke().catch(() => undefined);
      throw err;
    }
    if (this.left) {
      // Left while this registration was under way (a rejoin during shutdown): not kept.
      await lease.revoke().catch(() => undefined);
      return;
    }
    this.lease = lease;
    for (const listener of this.leaseListeners) listener(lease.id);
    lease.onLost((error) => void this.rejoin(error));
    this.logger.info({ nodeId: this.nodeId, leaseSeconds: NODE_LEASE_SECONDS }, 'joined the cluster');
  }

  /** Puts this node's alive key on lease, once no other process holds it (until deadline). */
  private async claimAlive(lease: StoreLease, deadline: number): Promise<void> {
    const alive: Alive = { instance: this.instance, startedAt: this.startedAt };
    for (;;) {
      const clash = await this.addressClash();
      if (clash) {
        if (Date.now() < deadline) {
          await sleep(250); // perhaps a node that was here before, its lease not lapsed yet
          continue;
        }
        throw failedPrecondition(
          `node ${clash.node} is up at ${clash.endpoint}, an address this node would advertise: the other nodes would reach that node in this one's place (a primary its own copy as a replica). Give every node an address of its own that the others reach it at (--advertise)`,
        );
      }
      const record = this.record();
      const { succeeded } = await this.store.txn({
        compare: [{ key: ALIVE + this.nodeId, target: 'createRevision', op: '=', value: 0 }],
        success: [
          { type: 'put', key: ALIVE + this.nodeId, value: JSON.stringify(alive), lease: lease.id },
          { type: 'put', key: NODES + this.nodeId, value: JSON.stringify(record) },
        ],
      });
      if (succeeded) {
        this.registeredOwn = JSON.stringify(record.ownVolumes);
        return;
      }
      if (Date.now() >= deadline) {
        const holder = await this.store.get(ALIVE + this.nodeId);
        const held = holder ? (JSON.parse(holder.value) as Alive) : undefined;
        // After a lease this process lost (etcd kept it a while longer): its own key, not another's.
        if (held?.instance === this.instance) throw failedPrecondition(`node id ${this.nodeId} is still up in the cluster on this process's previous lease, which etcd has not let lapse yet`);
        const since = held ? ` (a process started at ${held.startedAt})` : '';
        throw failedPrecondition(`node id ${this.nodeId} is already up in the cluster${since}: is another weftd running with the same --node-id?`);
      }
      await sleep(250);
    }
  }

  /** Another node that is up and advertises this node's NBD or API address (host:port), if any. */
  private async addressClash(): Promise<{ node: string; endpoint: string } | undefined> {
    const endpoints = (n: Pick<NodeRecord, 'address' | 'nbdPort' | 'apiPort'>) => [`${n.address}:${n.nbdPort}`, `${n.address}:${n.apiPort}`];
    const own = new Set(endpoints(this.describe()));
    for (const node of await listNodes(this.store)) {
      const shared = node.id !== this.nodeId && node.state === 'up' ? endpoints(node).find((e) => own.has(e)) : undefined;
      if (shared) return { node: node.id, endpoint: shared };
    }
    return undefined;
  }

  /** The lease lapsed (the store was out of reach for too long): other nodes see this one down. */
  private async rejoin(error: Error): Promise<void> {
    this.lease = undefined;
    for (const listener of this.leaseListeners) listener(null);
    this.logger.error({ err: error }, 'lost the cluster lease: other nodes see this node down until it rejoins');
    while (!this.left) {
      try {
        await this.register(Date.now() + (NODE_LEASE_SECONDS + 2) * 1000);
        return;
      } catch (err) {
        this.logger.warn({ err }, 'could not rejoin the cluster yet');
        await sleep(REJOIN_MS);
      }
    }
  }

  private async refresh(): Promise<void> {
    if (this.left || !this.lease) return;
    try {
      const record = this.record();
      await this.store.put(NODES + this.nodeId, JSON.stringify(record));
      this.registeredOwn = JSON.stringify(record.ownVolumes);
    } catch (err) {
      this.logger.warn({ err }, 'could not refresh the node registration');
    }
  }

  private record(): NodeRecord {
    return { ...this.describe(), updatedAt: new Date().toISOString() };
  }
}
