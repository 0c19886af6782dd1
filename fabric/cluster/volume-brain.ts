// One node's decisions for one replicated volume ("mini brain"): promotion, fencing, in-sync set
// changes, resync and repair, as a pure function step(state, event) -> (state, actions). The store,
// sockets and timers are the edges' business: they turn what they see into events and carry out actions.
//
// The in-sync rule. The replicas whose state is 'in-sync' in the volume's record are its in-sync
// set. A write is acknowledged only when every member has it. A member that misses a write is taken
// out by a transaction conditioned on the primary's lease and epoch (and the record it read), and the
// write is acknowledged only once that transaction committed; if it is refused, the primary stops
// serving and the write is never acknowledged. Only a member may be promoted: it alone is sure to
// hold every acknowledged write.
//
// Fencing: two primaries never both acknowledge writes. A promotion to epoch E+1 commits only if the
// record is the one the new primary read, in which it is a member; from then on the old primary
// (epoch E) can no longer change the record, its transactions being conditioned on its lease and
// epoch, so it can never take the new primary out of its in-sync set. The new primary raises the
// epoch of its own copy first, then of the other members, and serves only after that: its copy then
// refuses every write of epoch E, so the old primary can acknowledge no more writes, whether or not it
// still reaches the store or the other replicas. A write it acknowledged before is on the new
// primary's copy, which is the copy served. Replicas it could not raise are taken out, as out since
// epoch E, before it serves. Stopping the old primary (on seeing a higher epoch, or on losing its
// node's lease) ends its service sooner; safety does not rest on it, so an etcd outage stops only
// failover and set changes, never I/O on a healthy volume.

import { place, type NodeCandidate } from './placement';
import {
  changeTxn, inSyncNodes, leaseValue, promoted, promotionTxn, releaseTxn, resyncKind, applyChange,
  type PrimaryLease, type RecordChange, type StoreTxn, type VolumeRecord,
} from './volume-record';

export interface BrainConfig {
  /** How long a candidate waits per better-ranked candidate before it tries to take over. */
  promotionStepMs: number;
  /** How long a replica's node may stay down before its copy is replaced (--replica-timeout). */
  replicaTimeoutMs: number;
  /** How long after a failed resync the next one starts, the replica's node being up. */
  resyncRetryMs: number;
}

export const DEFAULT_BRAIN_CONFIG: BrainConfig = { promotionStepMs: 300, replicaTimeoutMs: 10 * 60_000, resyncRetryMs: 30_000 };

/** follower, or primary on its way: CAS sent (promoting), epochs being raised, unreachable replicas being taken out (fencing), serving. */
export type Role = 'follower' | 'promoting' | 'raising' | 'fencing' | 'serving';

/** Plain data (JSON), so that an edge can log or keep it. */
export interface BrainState {
  self: string;
  /** My node's lease id while it lives: keys put on it vanish with my node. */
  nodeLease?: string;
  record?: VolumeRecord;
  /** The store revision of `record`; 0 before the first. */
  recordRevision: number;
  /** The primary lease as last seen: null when absent, undefined before the first look. */
  lease?: PrimaryLease | null;
  nodes: NodeCandidate[];
  /** When each node was first seen down. */
  downSinceMs: Record<string, number>;
  /** When a replica whose resync failed may be resynced again. */
  resyncRetryAtMs: Record<string, number>;
  nowMs: number;
  role: Role;
  /**
   * The epoch this brain took by its own promotion, in this life. A node serves only at such an
   * epoch: after a restart its dirty maps are gone, so it takes over afresh, at a new epoch.
   */
  claimedEpoch?: number;
  /** The record revision of its last promotion attempt: one attempt per revision. */
  triedAtRevision?: number;
  /** Record changes to commit, in order, one transaction at a time. */
  changes: RecordChange[];
  /** The id of the first change's transaction, once sent. */
  sentId?: string;
  wakeAtMs?: number;
  /** The last report made, so that it is not repeated. */
  reported?: string;
}

export type BrainEvent =
  | { type: 'record'; record: VolumeRecord; modRevision: number }
  /** The primary lease key changed; null: it is gone. */
  | { type: 'primary-lease'; lease: PrimaryLease | null }
  /** My node's lease: its id once granted, null once lost. */
  | { type: 'node-lease'; leaseId: string | null }
  /** Membership changed (a node went up or down). */
  | { type: 'nodes'; nodes: NodeCandidate[] }
  /** The time asked for by a wake action has come. */
  | { type: 'tick' }
  /** A store transaction sent by a txn action: committed (at revision), or refused by its compares. */
  | { type: 'txn-result'; id: string; committed: boolean; revision?: number }
  /** The outcome of raise-epoch: the replicas whose epoch could not be raised. */
  | { type: 'epochs-raised'; epoch: number; unreachable: string[] }
  /** The replication layer: a replica missed a write (it asks for its removal before acknowledging). */
  | { type: 'replica-failed'; replica: string; reason: string }
  /** The replication layer: a resync finished (it asks for the replica's return). */
  | { type: 'resync-finished'; replica: string }
  /** An operator asks for a replica to be replaced. */
  | { type: 'replace'; replica: string };

export type BrainAction =
  /** Run the transaction after delayMs and answer with a txn-result of this id. A change's txn carries it, so that the edge can settle whoever waits for it. */
  | { type: 'txn'; id: string; txn: StoreTxn; delayMs?: number; change?: RecordChange }
  /** Raise the volume's epoch on these replicas (own copy first), then answer with epochs-raised. */
  | { type: 'raise-epoch'; epoch: number; replicas: string[] }
  /** Serve as primary at this epoch, replicating to the record's in-sync set. */
  | { type: 'serve'; epoch: number }
  /** Stop now: close the volume; every write not yet acknowledged fails. */
  | { type: 'stop-serving'; reason: string }
  | { type: 'resync'; replica: string; kind: 'delta' | 'full' }
  /** Send a tick at this time. */
  | { type: 'wake'; atMs: number }
  /** For the operator (log, volume show, metrics). */
  | { type: 'report'; health: 'unavailable' | 'degraded'; reason: string };

export interface Decision {
  state: BrainState;
  actions: BrainAction[];
}

export function initialBrainState(self: string): BrainState {
  return { self, recordRevision: 0, nodes: [], downSinceMs: {}, resyncRetryAtMs: {}, nowMs: 0, role: 'follower', changes: [] };
}

/** What this node does for the volume after `event`, which happened at nowMs. The same event twice asks for nothing more. */
export function step(state: BrainState, event: BrainEvent, nowMs: number, config: BrainConfig = DEFAULT_BRAIN_CONFIG): Decision {
  const s = structuredClone(state);
  s.nowMs = Math.max(s.nowMs, nowMs);
  const actions: BrainAction[] = [];
  switch (event.type) {
    case 'record':
      if (event.modRevision <= s.recordRevision) break; // replayed or older
      s.record = event.record;
      s.recordRevision = event.modRevision;
      onRecord(s, actions);
      break;
    case 'primary-lease':
      s.lease = event.lease;
      if (holding(s) && !isMine(s, event.lease)) stop(s, actions, `lost the primary lease of epoch ${s.claimedEpoch}`, false);
      if (s.role === 'promoting' && event.lease && !isMine(s, event.lease)) follow(s);
      if (event.lease) s.reported = undefined;
      break;
    case 'node-lease':
      s.nodeLease = event.leaseId ?? undefined;
      if (!event.leaseId) stop(s, actions, `node ${s.self} lost its lease`, false);
      break;
    case 'nodes':
      s.nodes = event.nodes;
      for (const n of event.nodes) {
        if (n.up) delete s.downSinceMs[n.id];
        else s.downSinceMs[n.id] ??= s.nowMs;
      }
      break;
    case 'tick':
      break;
    case 'txn-result':
      onTxnResult(s, actions, event);
      break;
    case 'epochs-raised':
      if (s.role !== 'raising' || event.epoch !== s.claimedEpoch) break;
      if (event.unreachable.includes(s.self)) {
        stop(s, actions, `could not raise the epoch of its own copy to ${event.epoch}`, true);
        break;
      }
      s.role = 'fencing';
      // They may hold writes of the old primary that this one lacks: out since the old epoch, so a full copy.
      for (const node of event.unreachable) queue(s, { kind: 'out', node, reason: 'its epoch could not be raised', lastEpoch: event.epoch - 1 });
      break;
    case 'replica-failed': {
      const replicaState = stateOf(s, event.replica);
      if (s.role !== 'serving' || (replicaState !== 'in-sync' && replicaState !== 'resyncing')) break;
      queue(s, { kind: 'out', node: event.replica, reason: event.reason });
      if (replicaState === 'resyncing') s.resyncRetryAtMs[event.replica] = s.nowMs + config.resyncRetryMs;
      break;
    }
    case 'resync-finished':
      if (s.role === 'serving' && stateOf(s, event.replica) === 'resyncing') queue(s, { kind: 'in-sync', node: event.replica });
      break;
    case 'replace':
      if (s.role === 'serving') replace(s, actions, event.replica, 'an operator asked');
      break;
  }
  settle(s, actions, config);
  return { state: s, actions };
}

function onRecord(s: BrainState, actions: BrainAction[]): void {
  const record = s.record as VolumeRecord;
  if (s.role === 'promoting') {
    if (record.primary === s.self && record.epoch === s.claimedEpoch) startRaising(s, actions); // my CAS committed; its answer may be lost
    else follow(s);
  } else if (holding(s) && (record.epoch !== s.claimedEpoch || record.primary !== s.self)) {
    stop(s, actions, `${record.primary} was promoted at epoch ${record.epoch} (this node served epoch ${s.claimedEpoch})`, false);
  }
}

function onTxnResult(s: BrainState, actions: BrainAction[], event: Extract<BrainEvent, { type: 'txn-result' }>): void {
  if (s.role === 'promoting' && event.id === promotionId(s.claimedEpoch as number)) {
    // Refused: someone else won, or my view was old; the next record says which.
    if (!event.committed) return;
    s.record = promoted(s.record as VolumeRecord, s.self);
    s.recordRevision = event.revision as number;
    startRaising(s, actions);
    return;
  }
  const change = s.changes[0];
  if (event.id !== s.sentId) return;
  if (!event.committed) {
    stop(s, actions, `the store refused "${change.kind} ${change.node}": this node may no longer hold the primary lease`, true);
    return;
  }
  let record = s.record as VolumeRecord;
  if ((event.revision as number) > s.recordRevision) {
    // Unless the watch brought the committed record first.
    s.record = record = applyChange(record, change);
    s.recordRevision = event.revision as number;
  }
  s.changes.shift();
  s.sentId = undefined;
  const started = change.kind === 'resync' ? change.node : change.kind === 'replace' ? change.by : undefined;
  const replica = record.replicas.find((r) => r.node === started);
  if (replica) actions.push({ type: 'resync', replica: replica.node, kind: resyncKind(record, replica) });
}

/** The decisions that follow from the whole view, whatever the event was. */
function settle(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  if (s.role === 'follower') maybePromote(s, actions, config);
  if (s.role === 'fencing' && s.changes.length === 0) {
    s.role = 'serving';
    actions.push({ type: 'serve', epoch: s.claimedEpoch as number });
  }
  if (s.role === 'serving') tendReplicas(s, actions, config);
  const change = s.changes[0];
  if (change && s.sentId === undefined && (s.role === 'fencing' || s.role === 'serving')) {
    s.sentId = `${change.kind}:${change.node}@${s.recordRevision}`;
    actions.push({ type: 'txn', id: s.sentId, txn: changeTxn(s.record as VolumeRecord, s.recordRevision, change), change });
  }
}

/** Rule: only a member of the in-sync set, the better ranked (record order, among those up) first. */
function maybePromote(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  const record = s.record;
  if (s.lease !== null || !record || !s.nodeLease || s.triedAtRevision === s.recordRevision) return;
  const candidates = inSyncNodes(record).filter((node) => node === s.self || isUp(s, node));
  const rank = candidates.indexOf(s.self);
  if (rank < 0) {
    if (candidates.length === 0) {
      const reason = `volume ${record.name} has no primary and no in-sync replica is up (in-sync: ${inSyncNodes(record).join(', ')}); ` +
        `${s.self} is ${stateOf(s, s.self) ?? 'no replica'} and may not be promoted: it may lack acknowledged writes`;
      report(s, actions, 'unavailable', reason);
    }
    return;
  }
  s.role = 'promoting';
  s.claimedEpoch = record.epoch + 1;
  s.triedAtRevision = s.recordRevision;
  const txn = promotionTxn(record, s.recordRevision, s.self, s.nodeLease);
  actions.push({ type: 'txn', id: promotionId(s.claimedEpoch), txn, delayMs: rank * config.promotionStepMs });
}

/** The primary's care of the other copies: resync those back up, replace those down too long. */
function tendReplicas(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  const record = s.record as VolumeRecord;
  if (s.nodes.length === 0) return; // membership not known yet
  const others = record.replicas.filter((r) => r.node !== s.self && r.state !== 'failed');
  let wakeAtMs: number | undefined;
  const wakeAt = (dueMs: number) => (wakeAtMs = Math.min(wakeAtMs ?? dueMs, dueMs));
  for (const r of others.filter((o) => o.state === 'out' && isUp(s, o.node))) {
    const retryMs = s.resyncRetryAtMs[r.node] ?? 0;
    if (retryMs <= s.nowMs) queue(s, { kind: 'resync', node: r.node });
    else wakeAt(retryMs);
  }
  for (const r of others.filter((o) => !isUp(s, o.node) && !replacing(s, o.node))) {
    const sinceMs = (s.downSinceMs[r.node] ??= s.nowMs); // a node missing from membership counts as down from now
    if (sinceMs + config.replicaTimeoutMs <= s.nowMs) replace(s, actions, r.node, `node ${r.node} has been down for ${s.nowMs - sinceMs} ms`);
    else wakeAt(sinceMs + config.replicaTimeoutMs);
  }
  if (wakeAtMs !== undefined && wakeAtMs !== s.wakeAtMs) actions.push({ type: 'wake', atMs: wakeAtMs });
  s.wakeAtMs = wakeAtMs;
}

function replace(s: BrainState, actions: BrainAction[], node: string, why: string): void {
  const record = s.record as VolumeRecord;
  const replica = record.replicas.find((r) => r.node === node);
  if (!replica || node === s.self || replica.state === 'failed' || replacing(s, node)) return;
  const holders = new Set(record.replicas.map((r) => r.node));
  try {
    const [by] = place(s.nodes.filter((n) => !holders.has(n.id)), { sizeBytes: record.sizeBytes, replicas: 1, class: record.class }).nodes;
    queue(s, { kind: 'replace', node, by });
  } catch (err) {
    report(s, actions, 'degraded', `volume ${record.name}: cannot replace the copy on ${node} (${why}): ${(err as Error).message}`);
  }
}

/** Whether a replacement of node's copy exists or is on its way. */
function replacing(s: BrainState, node: string): boolean {
  return (s.record as VolumeRecord).replicas.some((r) => r.replaces === node) || s.changes.some((c) => c.kind === 'replace' && c.node === node);
}

function startRaising(s: BrainState, actions: BrainAction[]): void {
  const record = s.record as VolumeRecord;
  s.role = 'raising';
  s.lease = { node: s.self, epoch: record.epoch };
  actions.push({ type: 'raise-epoch', epoch: record.epoch, replicas: [s.self, ...inSyncNodes(record).filter((n) => n !== s.self)] });
}

/** Ends this node's service (or its way to it) and forgets the epoch it took: it never serves at it again. */
function stop(s: BrainState, actions: BrainAction[], reason: string, release: boolean): void {
  if (s.role === 'follower') return;
  actions.push({ type: 'stop-serving', reason });
  const lease = { node: s.self, epoch: s.claimedEpoch as number };
  if (release && isMine(s, s.lease ?? null)) actions.push({ type: 'txn', id: `release@${lease.epoch}`, txn: releaseTxn((s.record as VolumeRecord).name, lease) });
  follow(s);
}

function follow(s: BrainState): void {
  s.role = 'follower';
  s.claimedEpoch = undefined;
  s.changes = [];
  s.sentId = undefined;
  s.wakeAtMs = undefined;
}

function queue(s: BrainState, change: RecordChange): void {
  if (!s.changes.some((c) => c.kind === change.kind && c.node === change.node)) s.changes.push(change);
}

function report(s: BrainState, actions: BrainAction[], health: 'unavailable' | 'degraded', reason: string): void {
  if (s.reported === reason) return;
  s.reported = reason;
  actions.push({ type: 'report', health, reason });
}

/** Raising, fencing or serving: this node holds the lease at the epoch it claimed. */
function holding(s: BrainState): boolean {
  return s.role === 'raising' || s.role === 'fencing' || s.role === 'serving';
}

function isMine(s: BrainState, lease: PrimaryLease | null): boolean {
  return lease !== null && s.claimedEpoch !== undefined && leaseValue(lease) === leaseValue({ node: s.self, epoch: s.claimedEpoch });
}

function isUp(s: BrainState, node: string): boolean {
  return s.nodes.some((n) => n.id === node && n.up);
}

function stateOf(s: BrainState, node: string) {
  return s.record?.replicas.find((r) => r.node === node)?.state;
}

const promotionId = (epoch: number) => `promote@${epoch}`;
