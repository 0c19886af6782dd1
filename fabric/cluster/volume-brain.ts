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
// epoch E, before it serves. Stopping the old primary (on seeing a higher epoch, or another node's
// primary lease) ends its service sooner; safety does not rest on it, so an etcd outage stops only
// failover and set changes, never I/O on a healthy volume. For the same reason a primary whose node
// lost its lease (its store is out of reach) serves on, and once its node has a lease again it puts
// its primary lease on it (relet): back, if the key lapsed with the old one, only while the record
// it read still names it at its epoch (a promotion of another changes the record).

import { createHash } from 'node:crypto';
import { place } from './placement';
import { DEFAULT_BRAIN_CONFIG, type BrainAction, type BrainConfig, type BrainEvent, type BrainState, type Decision } from './volume-brain-state';
import { applyChange, changeTxn, inSyncNodes, promoted, promotionTxn, releaseTxn, reletTxn, resyncKind, type PrimaryLease, type RecordChange, type VolumeRecord } from './volume-record';

/** What this node does for the volume after `event`, which happened at nowMs. The same event twice asks for nothing more. */
export function step(state: BrainState, event: BrainEvent, nowMs: number, config: BrainConfig = DEFAULT_BRAIN_CONFIG): Decision {
  const s = structuredClone(state);
  s.nowMs = Math.max(s.nowMs, nowMs);
  const actions: BrainAction[] = [];
  switch (event.type) {
    case 'record':
      if (event.modRevision <= s.recordRevision) break; // replayed or older
      // A promotion put a lease key in the same transaction: a view of the lease older than this
      // record does not know of it. A newer one does (the lease's watch may run ahead of the records').
      if (s.record && event.record.epoch > s.record.epoch && s.leaseRevision < event.modRevision) s.lease = undefined;
      s.record = event.record;
      s.recordRevision = event.modRevision;
      onRecord(s, actions);
      break;
    case 'primary-lease':
      if (event.modRevision < s.leaseRevision) break; // older than what was seen (a read, then the watch's replay)
      s.lease = event.lease;
      s.leaseRevision = event.modRevision;
      // Held again (a promotion, or a primary's relet after an outage): once it is gone, a member may try again on the same record.
      if (event.lease !== null) s.triedAtRevision = undefined;
      // Another's: a newer primary. Gone: it lapsed with my node's lease (the store was out of reach), or was deleted; relet (settle).
      if (holding(s) && event.lease !== null && !isMine(s, event.lease)) stop(s, actions, `lost the primary lease of epoch ${s.claimedEpoch} to ${event.lease.node} at epoch ${event.lease.epoch}`, false);
      if (s.role === 'promoting' && event.lease && !isMine(s, event.lease)) follow(s);
      if (event.lease) s.reported = undefined;
      break;
    case 'node-lease':
      // Without its lease a node cannot take over; a primary serves on (an etcd outage is not a
      // storage outage): a newer primary fences it in the replicas if one is promoted meanwhile.
      // A promotion sent on a lease that has ended can never commit: it is tried again on the new one.
      if (s.role === 'promoting' && (event.leaseId ?? undefined) !== s.nodeLease) {
        follow(s);
        s.triedAtRevision = undefined;
      }
      // A relet on a node lease that has ended: the runner stops sending it; the next goes on the new one.
      if (s.reletOn !== (event.leaseId ?? undefined)) s.reletId = undefined;
      if (event.leaseId !== null && s.nodeLease === undefined && s.lostNodeLease) s.rejoinedAtMs = s.nowMs;
      if (event.leaseId === null && s.nodeLease !== undefined) s.lostNodeLease = true;
      s.nodeLease = event.leaseId ?? undefined;
      break;
    case 'fenced':
      if (holding(s)) stop(s, actions, `a replica refused a write of epoch ${s.claimedEpoch}: a newer primary raised its epoch`, false);
      break;
    case 'serve-failed':
      if (s.role !== 'serving' || s.claimedEpoch !== event.epoch) break;
      s.serveFailedAtMs = s.nowMs;
      stop(s, actions, `could not serve epoch ${event.epoch}: ${event.reason}`, true);
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
        s.serveFailedAtMs = s.nowMs; // as after serve-failed: its disk may fail it again, the next member goes first
        stop(s, actions, `could not raise the epoch of its own copy to ${event.epoch}`, true);
        break;
      }
      s.role = 'fencing';
      // They may hold writes of the old primary that this one lacks: a full copy.
      for (const node of event.unreachable) queue(s, { kind: 'out', node, reason: 'its epoch could not be raised', lastEpoch: event.epoch - 1, diverged: true });
      break;
    case 'replica-failed': {
      const replicaState = stateOf(s, event.replica);
      if (s.role !== 'serving' || (replicaState !== 'in-sync' && replicaState !== 'resyncing')) break;
      queue(s, { kind: 'out', node: event.replica, reason: event.reason });
      // Its grace period counts its time out of sync: kept in sync while its node was listed down
      // (it had lost only the store), it starts now, not when the node went down.
      if (replicaState === 'in-sync' && s.downSinceMs[event.replica] !== undefined) s.downSinceMs[event.replica] = s.nowMs;
      if (replicaState === 'resyncing') {
        s.resyncRetryAtMs[event.replica] = s.nowMs + config.resyncRetryMs;
        const failingSinceMs = (event.ranMs ?? 0) >= config.replicaTimeoutMs ? undefined : s.resyncFailingSinceMs[event.replica];
        if (!event.notItsFault) s.resyncFailingSinceMs[event.replica] = failingSinceMs ?? s.nowMs;
      }
      break;
    }
    case 'local-failed':
      handOver(s, actions, event.reason);
      break;
    case 'replica-diverged':
      // Only a full copy brings it back, whatever its state: out as diverged, even if out already.
      if (s.role === 'serving' && stateOf(s, event.replica) !== undefined) queue(s, { kind: 'out', node: event.replica, reason: event.reason, diverged: true });
      break;
    case 'resync-finished':
      delete s.resyncFailingSinceMs[event.replica];
      if (s.role === 'serving' && stateOf(s, event.replica) === 'resyncing') queue(s, { kind: 'in-sync', node: event.replica });
      break;
    case 'replace':
      if (s.role === 'serving') replace(s, actions, event.replica, 'an operator asked');
      break;
    case 'resized': {
      // Against the size the record will have once the resizes queued are made: it never shrinks.
      const will = Math.max((s.record as VolumeRecord).sizeBytes, ...s.changes.map((c) => (c.kind === 'resize' ? c.sizeBytes : 0)));
      if (s.role === 'serving' && will < event.sizeBytes) queue(s, { kind: 'resize', node: s.self, sizeBytes: event.sizeBytes });
      break;
    }
    case 'reverting':
    case 'snapshotting': {
      // As the record will be once the changes queued are made.
      const queued = s.changes.filter((c) => c.kind === event.type && c.node === s.self).pop() as { snapshot?: string } | undefined;
      const will = queued ? queued.snapshot : (s.record as VolumeRecord)[event.type];
      if (s.role === 'serving' && will !== event.snapshot) queue(s, { kind: event.type, node: s.self, snapshot: event.snapshot });
      break;
    }
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
  if (event.id === s.reletId) {
    s.reletId = undefined;
    // Refused: the key is there (mine, put by a try whose answer was lost, or another's), or the
    // record changed; the watches bring which, and the next view is tried (or another's lease stops
    // me). Committed: the key is mine, unless the watch has told of it since (it may have lapsed again).
    if (event.committed && holding(s) && (event.revision as number) >= s.leaseRevision) {
      s.lease = { node: s.self, epoch: s.claimedEpoch as number };
      s.leaseRevision = event.revision as number;
      s.leaseOn = s.reletOn;
    }
    return;
  }
  const change = s.changes[0];
  if (event.id !== s.sentId) return;
  // Refused for want of the key: sent again once it is relet. Refused on a view older than mine: the
  // store may have judged it before the key was relet (its retries outlast an outage), so sent again
  // on my view. Only a refusal on the view I hold says that I may have lost the lease.
  if (!event.committed && holding(s) && (s.lease === null || s.sentOn !== viewOf(s))) {
    s.sentId = undefined;
    return;
  }
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
  s.sends = 0;
  if (change.kind === 'out' && change.node === s.self) {
    stop(s, actions, `handed over: ${change.reason}`, true);
    return;
  }
  const started = change.kind === 'resync' ? change.node : change.kind === 'replace' ? change.by : undefined;
  const replica = record.replicas.find((r) => r.node === started);
  if (replica) actions.push({ type: 'resync', replica: replica.node, kind: resyncKind(record, replica) });
}

/** The decisions that follow from the whole view, whatever the event was. */
function settle(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  if (s.role === 'follower') {
    releaseStale(s, actions);
    maybePromote(s, actions, config);
  }
  if (s.role === 'fencing' && s.changes.length === 0) {
    s.role = 'serving';
    actions.push({ type: 'serve', epoch: s.claimedEpoch as number });
  }
  if (s.role === 'serving') tendReplicas(s, actions, config);
  if (holding(s)) relet(s, actions);
  const change = s.changes[0];
  // A change is conditioned on my lease key: without it (it lapsed), it waits for the relet.
  if (change && s.sentId === undefined && (s.role === 'fencing' || s.role === 'serving') && isMine(s, s.lease ?? null)) {
    s.sends = (s.sends ?? 0) + 1;
    s.sentId = `${change.kind}:${change.node}@${s.recordRevision}${s.sends > 1 ? `#${s.sends}` : ''}`;
    s.sentOn = viewOf(s);
    actions.push({ type: 'txn', id: s.sentId, txn: changeTxn(s.record as VolumeRecord, s.recordRevision, change), change });
  }
}

/**
 * A key naming this node while it does not serve: of an earlier life (it restarted), or put back by
 * a relet that committed after this node stopped (its answer then ignored). Left, it would stand on
 * this node's live lease for good, and no member would ever take over: deleted, if still that one.
 */
function releaseStale(s: BrainState, actions: BrainAction[]): void {
  const lease = s.lease;
  if (!lease || lease.node !== s.self || !s.record || s.staleReleasedAt === s.leaseRevision) return;
  s.staleReleasedAt = s.leaseRevision;
  actions.push({ type: 'txn', id: `release@${lease.epoch}`, txn: releaseTxn(s.record.name, lease) });
}

/**
 * My primary lease key onto my node's current lease: moved while it is still there on an ended one,
 * or put back once it lapsed with it, on the record I read (which names me at my epoch: holding).
 * One try per view; a refusal waits for the next view (the key's, the record's, or a new node lease).
 */
function relet(s: BrainState, actions: BrainAction[]): void {
  const lease = s.lease;
  const moved = lease !== null && lease !== undefined && isMine(s, lease) && s.leaseOn !== undefined && s.leaseOn !== s.nodeLease;
  if (!s.nodeLease || s.reletId !== undefined || (lease !== null && !moved)) return;
  const triedOn = `${s.nodeLease}@${s.leaseRevision}/${s.recordRevision}`;
  if (s.reletTriedOn === triedOn) return;
  s.reletTriedOn = triedOn;
  s.reletId = `relet:${triedOn}`;
  s.reletOn = s.nodeLease;
  const mine = { node: s.self, epoch: s.claimedEpoch as number };
  actions.push({ type: 'txn', id: s.reletId, txn: reletTxn(s.record as VolumeRecord, s.recordRevision, mine, lease === null ? 'lapsed' : 'held', s.nodeLease), nodeLease: s.nodeLease });
}

/**
 * Rule: only a member of the in-sync set, the better ranked (among those up) first. The rank is by a
 * hash of the volume's name and the node's (rendezvous hashing): every node ranks alike, and the
 * volumes of a node that dies spread evenly over the others, rather than all go to the next node in
 * their records (placement's order, the same for most volumes), which then served them all and took
 * longer to raise them.
 * A new volume (never served, epoch 0) starts on the primary placement chose while that node is up:
 * the workload may have asked for it (locality).
 */
function maybePromote(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  const record = s.record;
  if (s.lease !== null || !record || !s.nodeLease || s.triedAtRevision === s.recordRevision) return;
  if (record.epoch === 0 && record.primary !== s.self && isUp(s, record.primary)) return;
  const candidates = promotionRank(record.name, inSyncNodes(record)).filter((node) => node === s.self || isUp(s, node));
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
  const failedLately = s.serveFailedAtMs !== undefined && s.nowMs - s.serveFailedAtMs < config.resyncRetryMs;
  // The primary may have lost its lease to the same outage as mine: it relets first if it lives.
  const rejoinedLately = record.primary !== s.self && s.rejoinedAtMs !== undefined && s.nowMs - s.rejoinedAtMs < config.rejoinGraceMs;
  const delayMs = rank * config.promotionStepMs + (failedLately ? config.resyncRetryMs : 0) + (rejoinedLately ? config.rejoinGraceMs : 0);
  actions.push({ type: 'txn', id: promotionId(s.claimedEpoch), txn, delayMs, nodeLease: s.nodeLease });
}

/** nodes, in the order they may take volume over (see maybePromote). */
export function promotionRank(volume: string, nodes: readonly string[]): string[] {
  const weight = (node: string) => createHash('sha256').update(`${volume}\0${node}`).digest().readUInt32BE(0);
  return nodes.map((node) => ({ node, weight: weight(node) })).sort((x, y) => x.weight - y.weight || x.node.localeCompare(y.node)).map((x) => x.node);
}

/** The primary's care of the other copies: resync those back up, replace those down too long. */
function tendReplicas(s: BrainState, actions: BrainAction[], config: BrainConfig): void {
  const record = s.record as VolumeRecord;
  if (s.nodes.length === 0) return; // membership not known yet
  const others = record.replicas.filter((r) => r.node !== s.self && r.state !== 'failed');
  let wakeAtMs: number | undefined;
  const wakeAt = (dueMs: number) => (wakeAtMs = Math.min(wakeAtMs ?? dueMs, dueMs));
  for (const r of others.filter((o) => o.state === 'out' && isUp(s, o.node) && !replacing(s, o.node))) {
    // A copy whose resyncs keep failing, its node up, is as lost as one whose node stays down.
    // Without a node to put a new copy on, its resyncs go on: its disk may recover.
    const failingSinceMs = s.resyncFailingSinceMs[r.node];
    if (failingSinceMs !== undefined && failingSinceMs + config.replicaTimeoutMs <= s.nowMs) {
      replace(s, actions, r.node, `its resyncs have failed for over ${Math.round(config.replicaTimeoutMs / 1000)} s`); // one report while it lasts
      if (replacing(s, r.node)) continue;
    } else if (failingSinceMs !== undefined) wakeAt(failingSinceMs + config.replicaTimeoutMs);
    const retryMs = s.resyncRetryAtMs[r.node] ?? 0;
    if (retryMs <= s.nowMs) queue(s, { kind: 'resync', node: r.node });
    else wakeAt(retryMs);
  }
  // A copy still in sync takes every write (or leaves the set at the first it misses): its node's
  // contact with the store is no measure of it. The runner checks such copies (checkCopiesOfDownNodes).
  for (const r of others.filter((o) => !isUp(s, o.node) && o.state !== 'in-sync' && !replacing(s, o.node))) {
    const sinceMs = (s.downSinceMs[r.node] ??= s.nowMs); // a node missing from membership counts as down from now
    if (sinceMs + config.replicaTimeoutMs <= s.nowMs) replace(s, actions, r.node, `node ${r.node} is down past the grace period`);
    else wakeAt(sinceMs + config.replicaTimeoutMs);
  }
  if (wakeAtMs !== undefined && wakeAtMs !== s.wakeAtMs) actions.push({ type: 'wake', atMs: wakeAtMs });
  s.wakeAtMs = wakeAtMs;
}

/**
 * The primary's own copy failed a request that an in-sync replica took or could serve: the copy
 * (its disk) is what fails, not the volume. The primary takes its copy out of the in-sync set, as
 * diverged (the failed change may have landed in part), then stops and releases its lease, so that
 * a member takes over at once. The others hold every acknowledged write: removing this copy keeps
 * the in-sync rule. Without another member in the set it serves on, and the request fails.
 */
function handOver(s: BrainState, actions: BrainAction[], reason: string): void {
  if (s.role !== 'serving') return;
  const record = s.record as VolumeRecord;
  // A member whose node is down could not take over: the volume would have no primary until it came back.
  if (inSyncNodes(record).some((n) => n !== s.self && isUp(s, n))) queue(s, { kind: 'out', node: s.self, reason, diverged: true });
  else report(s, actions, 'degraded', `volume ${record.name}: ${reason}; no other copy is in sync and up to take over`);
}

function replace(s: BrainState, actions: BrainAction[], node: string, why: string): void {
  const record = s.record as VolumeRecord;
  const replica = record.replicas.find((r) => r.node === node);
  if (!replica || node === s.self || replica.state === 'failed' || replacing(s, node)) return;
  // Replacements queued and not yet in the record hold a copy too (two copies down together are
  // replaced on two nodes); those that stay, theirs included, count for the zones.
  const queued = s.changes.flatMap((c) => (c.kind === 'replace' ? [c] : []));
  const holders = new Set([...record.replicas.map((r) => r.node), ...queued.map((c) => c.by)]);
  const leaving = new Set([node, ...queued.map((c) => c.node)]);
  const staying = [...record.replicas.filter((r) => r.state !== 'failed' && !leaving.has(r.node)).map((r) => r.node), ...queued.map((c) => c.by)];
  const zonesTaken = staying.flatMap((id) => s.nodes.filter((n) => n.id === id).map((n) => n.zone));
  try {
    const [by] = place(s.nodes.filter((n) => !holders.has(n.id)), { sizeBytes: record.sizeBytes, replicas: 1, class: record.class, zonesTaken }).nodes;
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
  s.leaseOn = s.nodeLease; // the promotion's: a new node lease while it was on its way made this node give it up
  // The promotion put the lease in the same transaction as the record, unless a newer view of the lease came first.
  if (s.leaseRevision <= s.recordRevision) {
    s.lease = { node: s.self, epoch: record.epoch };
    s.leaseRevision = s.recordRevision;
  } else if (!isMine(s, s.lease ?? null)) {
    stop(s, actions, `lost the primary lease of epoch ${record.epoch} as it was promoted`, false);
    return;
  }
  actions.push({ type: 'raise-epoch', epoch: record.epoch, replicas: [s.self, ...inSyncNodes(record).filter((n) => n !== s.self)] });
}

/** Ends this node's service (or its way to it) and forgets the epoch it took: it never serves at it again. */
function stop(s: BrainState, actions: BrainAction[], reason: string, release: boolean): void {
  if (s.role === 'follower') return;
  actions.push({ type: 'stop-serving', reason });
  const lease = { node: s.self, epoch: s.claimedEpoch as number };
  if (release && isMine(s, s.lease ?? null)) {
    actions.push({ type: 'txn', id: `release@${lease.epoch}`, txn: releaseTxn((s.record as VolumeRecord).name, lease) });
    s.staleReleasedAt = s.leaseRevision; // asked already
  }
  follow(s);
}

function follow(s: BrainState): void {
  s.role = 'follower';
  // Another primary resyncs the copies, or this one again later: its own failures then, not these.
  s.resyncFailingSinceMs = {};
  s.claimedEpoch = undefined;
  s.leaseOn = undefined;
  s.reletId = undefined;
  s.changes = [];
  s.sentId = undefined;
  s.sends = 0;
  s.wakeAtMs = undefined;
}

/**
 * A change of a copy's state is queued once (the record holds a state, not a history). A change that
 * carries a value (a size, a mark) takes the place of one of its kind still waiting to be sent
 * (a resize, the larger size), or waits behind one sent: dropping it would leave its waiter waiting.
 */
function queue(s: BrainState, change: RecordChange): void {
  const same = (c: RecordChange) => c.kind === change.kind && c.node === change.node;
  let last = -1;
  s.changes.forEach((c, i) => (last = same(c) ? i : last));
  // A pending 'out' without diverged takes it on: dropped, the copy would come back by a delta resync.
  const newer = change.kind === 'resize' || change.kind === 'reverting' || change.kind === 'snapshotting' || (change.kind === 'out' && change.diverged === true && last >= 0 && !(s.changes[last] as typeof change).diverged);
  if (last < 0) s.changes.push(change);
  else if (!newer) return;
  else if (last === 0 && s.sentId !== undefined) s.changes.push(change);
  else if (change.kind === 'resize') s.changes[last] = { ...change, sizeBytes: Math.max(change.sizeBytes, (s.changes[last] as typeof change).sizeBytes) };
  else s.changes[last] = change;
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
  return lease !== null && lease.node === s.self && lease.epoch === s.claimedEpoch;
}

const viewOf = (s: BrainState) => `${s.recordRevision}/${s.leaseRevision}`;

function isUp(s: BrainState, node: string): boolean {
  return s.nodes.some((n) => n.id === node && n.up);
}

function stateOf(s: BrainState, node: string) {
  return s.record?.replicas.find((r) => r.node === node)?.state;
}

const promotionId = (epoch: number) => `promote@${epoch}`;
