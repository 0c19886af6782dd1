// The vocabulary of a volume's brain (volume-brain.ts): its state, the events it hears and the
// actions it asks the edges for. All plain data (JSON), so that an edge can log or keep them.

import type { NodeCandidate } from './placement';
import type { Txn } from './cluster-store';
import type { OperationMark, PrimaryLease, RecordChange, VolumeRecord } from './volume-record';

export interface BrainConfig {
  /** How long a candidate waits per better-ranked candidate before it tries to take over. */
  promotionStepMs: number;
  /** How long a replica's node may stay down, or its resyncs keep failing, before its copy is replaced (--replica-timeout). */
  replicaTimeoutMs: number;
  /** How long after a failed resync the next one starts, the replica's node being up (short: a node that comes back while its lease still looked alive catches up in seconds). */
  resyncRetryMs: number;
  /** How long a node taking over waits for its own copy to take the new epoch (a durable write) before it lets the next member go first. */
  ownRaiseLimitMs: number;
  /**
   * How much longer a node that has just got its lease back (the store was out of reach) waits
   * before it takes over a volume of another primary: that primary may have lost its lease to the
   * same outage, and puts its primary lease back as soon as it has a new one (relet).
   */
  rejoinGraceMs: number;
}

export const DEFAULT_BRAIN_CONFIG: BrainConfig = { promotionStepMs: 300, replicaTimeoutMs: 10 * 60_000, resyncRetryMs: 2_000, ownRaiseLimitMs: 10_000, rejoinGraceMs: 2_000 };

/** follower, or primary on its way: CAS sent (promoting), epochs being raised, unreachable replicas being taken out (fencing), serving. */
export type Role = 'follower' | 'promoting' | 'raising' | 'fencing' | 'serving';

/** What one node knows of one volume, and what it has asked for. */
export interface BrainState {
  self: string;
  /** My node's lease id while it lives: keys put on it vanish with my node. */
  nodeLease?: string;
  /** Whether my node has lost a lease (the store was out of reach), and when it got one again. */
  lostNodeLease?: boolean;
  rejoinedAtMs?: number;
  /** The node lease my primary lease key was put on (by my promotion, or a relet since). */
  leaseOn?: string;
  /** The id of my relet in flight (my primary lease key put, or put back, on my node's lease), and that node lease. */
  reletId?: string;
  reletOn?: string;
  /** What the last relet was tried on (node lease, lease and record revisions): one try per view. */
  reletTriedOn?: string;
  /** The lease revision of the last stale key of this node's that it asked the store to delete: once per key. */
  staleReleasedAt?: number;
  record?: VolumeRecord;
  /** The store revision of `record`; 0 before the first. */
  recordRevision: number;
  /** The primary lease as last seen: null when absent, undefined before the first look. */
  lease?: PrimaryLease | null;
  /** The store revision `lease` is as of; 0 before the first look. */
  leaseRevision: number;
  nodes: NodeCandidate[];
  /** When each node was first seen down. */
  downSinceMs: Record<string, number>;
  /** When a replica whose resync failed may be resynced again. */
  resyncRetryAtMs: Record<string, number>;
  /**
   * Since when each replica's resyncs have failed, its node up (a failing or full disk there): until
   * one ends well, or one runs a whole replica timeout before its connection is lost (a blip in a
   * long copy).
   */
  resyncFailingSinceMs: Record<string, number>;
  nowMs: number;
  role: Role;
  /**
   * The epoch this brain took by its own promotion, in this life. A node serves only at such an
   * epoch: after a restart its dirty maps are gone, so it takes over afresh, at a new epoch.
   */
  claimedEpoch?: number;
  /** The record revision of its last promotion attempt: one attempt per revision. */
  triedAtRevision?: number;
  /** When it last failed to serve an epoch it had claimed: for resyncRetryMs it lets another member take over first. */
  serveFailedAtMs?: number;
  /** Record changes to commit, in order, one transaction at a time. */
  changes: RecordChange[];
  /** The id of the first change's transaction, once sent. */
  sentId?: string;
  /** The view (record and primary lease revisions) that transaction was built on. */
  sentOn?: string;
  /** How often the first change has been sent: each send's id is its own (a refusal answers one send). */
  sends?: number;
  wakeAtMs?: number;
  /** The last report made, so that it is not repeated. */
  reported?: string;
}

export type BrainEvent =
  | { type: 'record'; record: VolumeRecord; modRevision: number }
  /**
   * The primary lease key as of a store revision (its change's, or a read's); null: it is gone.
   * The lease and the records come by separate watches: either may be ahead of the other.
   */
  | { type: 'primary-lease'; lease: PrimaryLease | null; modRevision: number }
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
  /** The replication layer: a replica refused a write of this primary's epoch (a newer primary exists). */
  | { type: 'fenced' }
  /** The outcome of serve: it could not (its copy failed while the copies were made equal, or its log could not be saved). */
  | { type: 'serve-failed'; epoch: number; reason: string }
  /**
   * The replication layer: a replica missed a write (it asks for its removal before acknowledging),
   * or its resync failed; notItsFault: because of this node's own copy (it is not replaced for it).
   */
  /**
   * ranMs: for a resync that lost its connection (a blip), how long it had run; none for one the copy
   * failed itself (its disk full or failing), which fails the same way however often it is tried.
   */
  | { type: 'replica-failed'; replica: string; reason: string; notItsFault?: boolean; ranMs?: number }
  /** The replication layer: the primary's own copy failed a request that an in-sync replica took or could serve (its disk failed or is full). */
  | { type: 'local-failed'; reason: string }
  /** A revert reached the replica, or failed on it half done: it may differ anywhere from the primary's copy. */
  | { type: 'replica-diverged'; replica: string; reason: string }
  /** The replication layer: a resync finished (it asks for the replica's return). */
  | { type: 'resync-finished'; replica: string }
  /** An operator asks for a replica to be replaced. */
  | { type: 'replace'; replica: string }
  /** The primary grew every copy: the record is to say so. */
  | { type: 'resized'; sizeBytes: number }
  /** The primary begins a revert to snapshot or the taking of one, or (none) has ended it: the record is to say so first. */
  | { type: OperationMark; snapshot?: string };

export type BrainAction =
  /**
   * Run the transaction after delayMs and answer with a txn-result of this id. A change's txn carries
   * it, so that the edge can settle whoever waits for it; a promotion, the node lease it puts the
   * primary lease on (it cannot commit once that has ended).
   */
  | { type: 'txn'; id: string; txn: Txn; delayMs?: number; change?: RecordChange; nodeLease?: string }
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
  return { self, recordRevision: 0, leaseRevision: 0, nodes: [], downSinceMs: {}, resyncRetryAtMs: {}, resyncFailingSinceMs: {}, nowMs: 0, role: 'follower', changes: [] };
}
