// The edge of one replicated volume's brain on this node (volume-brain.ts decides; this carries
// out): it feeds the brain what the store, the replication layer and the clock say, runs the
// store transactions it asks for, raises epochs, and serves as primary through a ReplicatedDevice
// when told to. It is also that device's in-sync set: a removal or a return resolves once the
// brain's transaction for it committed, and fails if the brain stopped serving first.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { withDeadline } from '../deadline';
import { alreadyExists, failedPrecondition, IoError, NoAnswerError, WeftError } from '../errors';
import type { Logger } from '../logger';
import type { Absence, AbsenceLog } from '../replication/absence-log';
import type { ActivityLog } from '../replication/activity-log';
import type { PeerActivity } from '../replication/peer-activity';
import { DirtyMap } from '../replication/dirty-map';
import { PrimaryHandle } from '../replication/primary-handle';
import { LocalCopyFault, ReplicatedDevice, type ReplicaStatus } from '../replication/replicated-device';
import type { CopyOperation } from '../replication/replication-layer';
import type { InSyncSet } from '../replication/in-sync-set';
import { COPY_DURABLE_TIMEOUT_MS, nbdReplica, type RemoteReplica } from '../replication/remote-replica';
import { equalizeRegions } from '../replication/replica-verify';
import { NbdConnectionError } from '../nbd/client';
import type { VolumeLayer } from '../volume/block-device';
import { wholeBlocks } from '../store/block-size';
import type { EpochFence } from '../volume/epoch-fence';
import type { ClusterStore, Txn, TxnOp } from './cluster-store';
import { clearMissedDeletes, deleteEach, missedDeletes } from './missed-deletes';
import { CopyControls } from '../replication/control-ledger';
import { step } from './volume-brain';
import { initialBrainState, type BrainAction, type BrainConfig, type BrainEvent, type BrainState } from './volume-brain-state';
import { inSyncNodes, leaseAsRead, volumeKey, volumeLeaseKey, type OperationMark, type RecordChange, type ReplicaState, type VolumeRecord } from './volume-record';

/** How long raising a replica's epoch may take before it counts as unreachable. */
const RAISE_TIMEOUT_MS = 2000;
/** A store transaction that could not be sent (the store is out of reach) is tried again after this. */
const TXN_RETRY_MS = 1000;
/** A replica that does not answer a write within this is failed (and taken out of the in-sync set). */
const REPLICA_TIMEOUT_MS = 5000;
/** How long a resync asked for while the primary's device is still opening waits for it. */
const SERVE_WAIT_MS = 10_000;
/** How long a request the local copy failed waits for the volume to be handed over. */
const HAND_OVER_WAIT_MS = 10_000;
/** A revert or snapshot waits this long for the store to record that it is under way (nothing is done before); a snapshot or resize, that it has ended. */
const MARK_MS = 10_000;
/** How often the copies are flushed through while one in sync is on a node the store counts down (checkCopiesOfDownNodes). */
const COPY_CHECK_MS = 5000;
/** A snapshot cut short that could not be settled is tried again no sooner than this. */
const SETTLE_RETRY_MS = 5000;
/** ... doubling at each failure, up to this. */
const SETTLE_RETRY_MAX_MS = 60_000;
/** A control operation not started within this (the ones before it ran long) is refused. */
const CONTROL_START_MS = 20_000;

/** The replication this node runs as the volume's primary, at epoch. */
interface Serving {
  device: ReplicatedDevice;
  epoch: number;
}

export interface NodeAddress {
  host: string;
  nbdPort: number;
}

export interface RunnerContext {
  self: string;
  store: ClusterStore;
  /** This node's copy: its epoch, raised durably. */
  raiseLocalEpoch(volume: string, epoch: number): Promise<void>;
  /** The local copy below the volume's stack, for the replication this node runs as primary. */
  localCopy(volume: string): VolumeLayer | undefined;
  /** The local copy's epoch fence, which the primary's own writes pass (ControllerOptions.localFence). */
  localFence(volume: string): EpochFence;
  nodeAddress(node: string): NodeAddress | undefined;
  /** Has node make its (empty) copy of the volume: a replacement. */
  createCopy(node: string, volume: string, sizeBytes: number, poolClass: string): Promise<void>;
  /** The absence log of this node's copy. */
  absenceLog(volume: string): AbsenceLog | undefined;
  /** The activity log of this node's copy, for its time as the primary. */
  activityLog(volume: string): ActivityLog | undefined;
  /** Where node's copy may differ from the others, from its activity log. */
  activityOf(node: string, volume: string): Promise<{ epoch: number; map: DirtyMap }>;
  /** This node's copy's record of its primary's activity log. */
  peerActivity(volume: string): PeerActivity | undefined;
  /** Has node's copy record this primary's activity log; refused if its epoch is above the given one. */
  trackActivity(node: string, volume: string, epoch: number, revision: number, extents: readonly number[]): Promise<void>;
  /** The checksum of each block of the range on node's copy (this node's included); refused unless that copy is at the epoch. */
  blockChecksums(node: string, volume: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array>;
  /** Has node's copy log what copy `absent` misses (absence), or stop (null); refused if its epoch is above the given one. */
  trackAbsence(node: string, volume: string, epoch: number, absent: string, absence: Absence | null): Promise<void>;
  /**
   * Applies a control operation to node's copy, which refuses it if its epoch is above the given
   * one. The volume's writes wait meanwhile (held by a control operation, or the primary not serving
   * yet): a node that does not answer within seconds fails it.
   */
  controlCopy(node: string, volume: string, operation: CopyOperation, epoch: number): Promise<void>;
  /** Settles on node's copy the control operations sent it that got no answer (control-ledger.ts). */
  settleCopyControls(node: string, volume: string, ids: string[]): Promise<void>;
  /** The names of the snapshots node's copy holds (this node's included). */
  copySnapshotNames(node: string, volume: string): Promise<string[]>;
  config: BrainConfig;
  logger: Logger;
}

/** Someone waiting for a record change to commit: verdict() says when the record the store committed shows it, or that it never will. */
interface Waiter {
  /** 'done', the reason it cannot be, or undefined while it may yet be. */
  verdict(state: BrainState): string | undefined;
  resolve(): void;
  reject(error: Error): void;
}

export class VolumeRunner {
  private state: BrainState;
  private serving: Serving | undefined;
  private waiters: Waiter[] = [];
  private wakeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** markOperation calls so far, per mark: a late clear of an operation that gave up must not clear a later one's mark. */
  private readonly marks: Record<OperationMark, number> = { reverting: 0, snapshotting: 0 };
  /** The control operation running, or the last one: the next waits for it. */
  private controlTurn: Promise<unknown> = Promise.resolve();
  /** settleIfDue: one is under way; none before this time (ms since the epoch). */
  private settling = false;
  private settleAfter = 0;
  /** checkCopiesOfDownNodes: one is under way; when the last began (ms since the epoch). */
  private checkingCopies = false;
  private copiesCheckedAt = 0;
  private settleBackoffMs = 0;
  /**
   * This runner's connections to the copies, as the copies' nodes fence them: each newer one stops
   * the older ones (nbd-exports.ts), as a new connection follows one this end gave up on.
   */
  private readonly replicationFrom = randomBytes(8).toString('hex');
  private replicationGeneration = 0;
  /** The control operations sent to the copies; those that got no answer are settled before the copy is sent anything else. */
  private readonly controls = new CopyControls(
    this.replicationFrom,
    (node, operation, epoch) => this.context.controlCopy(node, this.name, operation, epoch),
    (node, ids) => this.context.settleCopyControls(node, this.name, ids),
  );

  constructor(readonly name: string, private readonly context: RunnerContext) {
    this.state = initialBrainState(context.self);
  }

  get record(): VolumeRecord | undefined {
    return this.state.record;
  }

  /** The brain's decisions after event, carried out; waiters settled. */
  dispatch(event: BrainEvent): void {
    if (this.closed) return;
    const { state, actions } = step(this.state, event, brainClockMs(), this.context.config);
    this.state = state;
    for (const action of actions) {
      this.execute(action).catch((err: unknown) => this.context.logger.error({ volume: this.name, action: action.type, err }, 'volume action failed'));
    }
    this.settleWaiters();
    this.settleIfDue();
    this.dropUnnamedCopies();
    this.checkCopiesOfDownNodes();
  }

  /**
   * Serving, with an in-sync copy on a node the store counts down: a flush through every copy, at
   * most every COPY_CHECK_MS. A copy that takes it stays (its node only lost the store: replacing it
   * would cost a full copy, with a copy fewer in sync meanwhile); one that does not goes out, and is
   * replaced once its node has been down past --replica-timeout. An idle volume would otherwise
   * never find a dead node's copy out, and could lose its last promotable copy with its primary.
   */
  private checkCopiesOfDownNodes(): void {
    const device = this.serving?.device;
    const record = this.state.record;
    if (!device || !record || this.checkingCopies || Date.now() < this.copiesCheckedAt + COPY_CHECK_MS) return;
    const up = (node: string) => this.state.nodes.some((n) => n.id === node && n.up);
    if (!record.replicas.some((r) => r.state === 'in-sync' && r.node !== this.context.self && !up(r.node))) return;
    this.checkingCopies = true;
    this.copiesCheckedAt = Date.now();
    device
      .checkCopies()
      .catch((err: unknown) => this.context.logger.warn({ volume: this.name, err }, 'could not check the copies on nodes the store counts down'))
      .finally(() => (this.checkingCopies = false));
  }

  /** Serving: the copies the record no longer names (replaced) leave the device. */
  private dropUnnamedCopies(): void {
    const record = this.state.record;
    const device = this.serving?.device;
    if (!record || !device) return;
    for (const { id } of device.status()) {
      if (record.replicas.some((r) => r.node === id)) continue;
      device.removeRemote(id).catch((err: unknown) => this.context.logger.warn({ volume: this.name, replica: id, err }, 'could not forget a replaced copy in the absence logs'));
    }
  }

  /**
   * Serving, with what a control operation left cut short (its last primary stopped part way), and
   * every copy back: settles it now, not at the next control operation, which an idle volume may
   * never get. A snapshot the record marks is dropped (dropCutShortSnapshot). A resize that grew some
   * copies and not this one is finished: left so, a later resize to a size between was refused by
   * the copies grown, every revert to an earlier snapshot too, and the volume grew unasked once one of
   * them served. Tried again at a later event if it fails, SETTLE_RETRY_MS on, then twice as long
   * each time (up to SETTLE_RETRY_MAX_MS).
   */
  private settleIfDue(): void {
    const serving = this.serving;
    const snapshot = this.state.record?.snapshotting;
    const resizeCutShort = (s: Serving) => s.device.largestCopyBytes > s.device.sizeBytes;
    const replicas = this.state.record?.replicas ?? [];
    // A resize needs every copy in sync (controlInTurn), a failed one being replaced too.
    const resizeDue = serving !== undefined && replicas.every((r) => r.state === 'in-sync') && resizeCutShort(serving);
    if (!serving || (snapshot === undefined && !resizeDue) || this.settling || Date.now() < this.settleAfter) return;
    if (replicas.some((r) => r.state !== 'in-sync' && r.state !== 'failed')) return;
    this.settling = true;
    this.inTurn(async () => {
      if (this.serving !== serving) return;
      // A control operation taking it (it marked it) settles it itself.
      if (snapshot !== undefined && this.state.record?.snapshotting === snapshot) await this.dropCutShortSnapshot(serving, snapshot);
      if (resizeDue && resizeCutShort(serving)) {
        const sizeBytes = serving.device.largestCopyBytes;
        this.context.logger.warn({ volume: this.name, sizeBytes, ownBytes: serving.device.sizeBytes }, 'finishing a resize cut short: a copy was grown, this one not');
        await this.controlInTurn({ type: 'resize', sizeBytes });
      }
      this.settleBackoffMs = 0;
    })
      .catch((err: unknown) => {
        this.settleBackoffMs = Math.min(SETTLE_RETRY_MAX_MS, this.settleBackoffMs * 2 || SETTLE_RETRY_MS);
        this.settleAfter = Date.now() + this.settleBackoffMs;
        this.context.logger.warn({ volume: this.name, snapshot, err }, 'an operation cut short is settled later');
      })
      .finally(() => (this.settling = false));
  }

  /**
   * The device that serves as primary, while this node is the primary (at an epoch above
   * afterEpoch, if given); a call after it stopped fails with ESHUTDOWN.
   */
  primaryDevice(afterEpoch = -1): PrimaryHandle | undefined {
    const serving = this.serving;
    if (serving && serving.epoch <= afterEpoch) return undefined;
    // A refusal met by a request of an earlier serving (still finishing) says nothing of this one's.
    return serving && new PrimaryHandle(serving.device, () => this.serving === serving, () => this.serving === serving && this.dispatch({ type: 'fenced' }));
  }

  /** The replication this node serves the volume with, while it is the primary. */
  replication(): ReplicatedDevice | undefined {
    return this.serving?.device;
  }

  /** What the replication layer says of each remote copy, while this node is the primary. */
  replicaStatus(): ReplicaStatus[] | undefined {
    return this.serving?.device.status();
  }

  /** Stops serving and forgets the volume (deleted, or no longer held here). */
  close(): void {
    if (this.closed) return;
    this.stopServing('the volume is no longer held on this node');
    this.closed = true;
    clearTimeout(this.wakeTimer);
    this.settleWaiters();
  }

  // ---- InSyncSet, for the ReplicatedDevice this node serves with ----

  /**
   * The in-sync set of the device that serves at epoch. A device outlives its serving by a little
   * (closed, it may still be ending a resync or a write): its calls then change nothing and fail, or
   * a resync of an earlier serving could put a copy in sync that the current one is still copying
   * to, and writes it missed would be acknowledged without it.
   */
  private inSyncSetAt(epoch: number): InSyncSet {
    const ended = () => Promise.reject(new IoError('ESHUTDOWN', `volume ${this.name}: this node no longer serves it at epoch ${epoch}`));
    return {
      members: () => (this.state.record ? inSyncNodes(this.state.record).filter((n) => n !== this.context.self) : []),
      remove: (replicaId, reason) => {
        if (!this.servesAt(epoch)) return ended();
        this.dispatch({ type: 'replica-failed', replica: replicaId, reason });
        return this.waitFor('out', replicaId, (state) => state !== 'in-sync' && state !== 'resyncing');
      },
      add: (replicaId) => {
        if (!this.servesAt(epoch)) return ended();
        this.dispatch({ type: 'resync-finished', replica: replicaId });
        // A copy taken out or being replaced meanwhile (failed, or gone from the record): the brain
        // does not bring it back, and the resync fails instead of waiting for good.
        return this.waitFor('in-sync', replicaId, (state) => state === 'in-sync', (state) => state !== 'resyncing');
      },
    };
  }

  /** The brain serves at epoch (the device may still be opening). */
  private servesAt(epoch: number): boolean {
    return !this.closed && this.state.role === 'serving' && this.state.claimedEpoch === epoch;
  }

  // ---- control operations, on the primary ----

  /** Resolves once this node serves, or after timeoutMs, or at once if it is not on its way to (its role says). */
  async untilServing(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const onItsWay = () => this.state.role !== 'serving' || !this.serving;
    while (onItsWay() && Date.now() < deadline && !this.closed) {
      const record = this.state.record;
      const designated = record?.primary === this.context.self || this.state.role !== 'follower';
      if (!designated) return;
      await sleep(50);
    }
  }

  /**
   * A snapshot, resize or revert of every copy at one point of the write stream: with every copy in
   * sync, changes paused, the other copies first (each checks this primary's epoch), then this one.
   * One at a time. A revert or a resize cannot be undone, so every copy (this one too) is asked
   * first whether it would take it; only a failure of the operation itself after that (a disk
   * error, a client attaching in the meantime) could leave copies changed and others not.
   *
   * A snapshot is marked in the record while it is taken (VolumeRecord.snapshotting), and
   * acknowledged only once the mark is cleared: one that fails on the way is deleted again from the
   * copies that may have made it, and one cut short (this node died, or lost the volume) is settled
   * by whoever serves next once every copy is back, or by the next control operation
   * (dropCutShortSnapshot).
   */
  control(operation: CopyOperation): Promise<void> {
    const queuedAt = Date.now();
    return this.inTurn(() => {
      // Its caller has given up by now (a forwarded call, after 30 s): a revert run this late would
      // throw away what was written since it was asked for.
      const waitedMs = Date.now() - queuedAt;
      if (waitedMs > CONTROL_START_MS) {
        return Promise.reject(new WeftError('UNAVAILABLE', `volume ${this.name}: the ${operation.type} waited ${Math.round(waitedMs / 1000)} s for the volume's control operations before it, and was not run: try again`));
      }
      return this.controlInTurn(operation);
    });
  }

  /** Runs fn once the control operations before it have ended. */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.controlTurn.then(fn);
    this.controlTurn = turn.catch(() => undefined);
    return turn;
  }

  private async controlInTurn(operation: CopyOperation): Promise<void> {
    const serving = this.serving;
    const record = this.state.record;
    const local = this.context.localCopy(this.name);
    if (!serving || !record || !local) throw failedPrecondition(`node ${this.context.self} does not serve volume ${this.name} as primary (the primary is ${record?.primary ?? 'unknown'})`);
    const lagging = record.replicas.filter((r) => r.state !== 'in-sync');
    if (lagging.length > 0) {
      throw failedPrecondition(`volume ${this.name}: a ${operation.type} needs every copy in sync; ${lagging.map((r) => `${r.node} is ${r.state}`).join(', ')}`);
    }
    // A snapshot needs the mark, and a revert to the snapshot marked needs to know whether it stays;
    // any other operation leaves it to settleIfDue.
    const marked = record.snapshotting;
    if (marked !== undefined && (operation.type === 'snapshot' || (operation.type === 'revert' && operation.snapshot === marked))) await this.dropCutShortSnapshot(serving, marked);
    const others = record.replicas.map((r) => r.node).filter((n) => n !== this.context.self);
    // What was sent the copies without an answer is settled before the writes are held, not while.
    await Promise.all(others.map((node) => this.controls.settled(node)));
    let markedHere: OperationMark | undefined;
    let done = false;
    let failure: unknown;
    try {
      if (operation.type === 'snapshot') {
        await this.checkSnapshotFree(serving, operation.name);
        await this.markOperation('snapshotting', operation.name);
        markedHere = 'snapshotting';
      }
      // Every copy written back first, clients still writing: what each writes back once the writes
      // are held (its control operation syncs its pools) is then only what came since. The node
      // calls made while they are held have a 5 s deadline (controlCopy).
      await serving.device.flush();
      await serving.device.paused(async () => {
        this.checkStillServing(serving, operation);
        // A change in flight when the pause began may have failed on a copy since: it lacks that one.
        const fellOut = others.filter((node) => serving.device.status().find((r) => r.id === node)?.state !== 'in-sync');
        if (fellOut.length > 0) {
          throw failedPrecondition(`volume ${this.name}: a ${operation.type} needs every copy in sync; ${fellOut.join(', ')} fell out of sync as it began`);
        }
        // Neither can be undone part way (a copy grown stays grown): every copy is asked first whether it would take it.
        if (operation.type === 'revert' || operation.type === 'resize') {
          for (const node of [...others, this.context.self]) await this.controls.apply(node, { ...operation, checkOnly: true }, serving.epoch);
        }
        // Should this node die part way, some copies would be reverted and others not: the record says
        // that a revert is under way until it has ended, and whoever is promoted meanwhile owes every
        // other copy a full copy (volume-record.ts: promoted).
        if (operation.type === 'revert') {
          await this.markOperation('reverting', operation.snapshot);
          markedHere = 'reverting';
        }
        await this.applyEverywhere(serving, others, local, operation);
      });
      done = true;
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      // After the pause: clients need not wait for these (a node that did not answer may not now).
      // Deleted again from every copy, this one too: any may have taken it (one that failed after it
      // did, or gave no answer), and none held one of its name before (checkSnapshotFree). Where it
      // cannot be deleted now, or a copy gave no answer (it may still take it after the delete), it
      // stays marked, to be settled (asked again) SETTLE_RETRY_MS on at the soonest.
      if (operation.type === 'snapshot' && !done && markedHere) {
        const kept = await this.deleteSnapshotFrom(serving, this.everyCopy(), operation.name);
        if (kept.length > 0 || failure instanceof NoAnswerError) {
          markedHere = undefined;
          this.settleAfter = Date.now() + SETTLE_RETRY_MS;
        }
      }
      const mark = markedHere;
      if (mark && !(done && operation.type === 'snapshot')) {
        // Left set, a revert mark costs full copies at the next promotion; a snapshot mark, a deletion later.
        await this.markOperation(mark, undefined).catch((err: unknown) =>
          this.context.logger.warn({ volume: this.name, mark, err }, 'the record still marks an operation that has ended: whoever serves next sees to it'),
        );
      }
    }
    if (operation.type === 'snapshot') await this.endSnapshot(operation.name);
    if (operation.type === 'resize') {
      const sizeBytes = wholeBlocks(operation.sizeBytes); // as the copies grew
      this.dispatch({ type: 'resized', sizeBytes });
      // Bounded: the next control operations wait for this one. Not recorded, the record follows at
      // the next serving (serve: a copy bigger than the record).
      const recorded = this.waitFor('resize', this.context.self, () => (this.state.record as VolumeRecord).sizeBytes >= sizeBytes);
      await withDeadline(recorded, MARK_MS, () => new WeftError('UNAVAILABLE', `volume ${this.name}: every copy grew to ${sizeBytes} bytes, but the cluster store did not record it within ${MARK_MS / 1000} s: try again`));
    }
  }

  /**
   * Refused if a copy already holds a snapshot of the name (the mark must never name one: the
   * snapshot it marks may be deleted if this node stops). A copy made after a snapshot (a replacement)
   * lacks it, so every copy is asked, not only this one.
   */
  private async checkSnapshotFree(serving: Serving, snapshot: string): Promise<void> {
    const copies = this.everyCopy();
    const held = await Promise.all(copies.map((node) => this.context.copySnapshotNames(node, this.name)));
    // One of the name deleted while a copy was away (its node cut off, not down) goes first: it
    // would be deleted later in the new one's place. The word of copies gone (replaced) goes with
    // them: it must not outlive the name's reuse (a deleted volume's kept snapshots take it on).
    const missed = await missedDeletes(this.context.store, this.name);
    const late = copies.filter((node) => missed[node]?.includes(snapshot));
    for (const node of late) await this.deleteMissedSnapshots(serving, node, [snapshot]);
    // The others go too, as far as they can: a copy that missed a delete and stayed in sync (cut
    // off from the deleting node only) would hold them, unlisted, until it was the primary or resynced.
    for (const node of copies.filter((n) => missed[n]?.some((name) => name !== snapshot))) {
      await this.deleteMissedSnapshots(serving, node).catch((err: unknown) =>
        this.context.logger.warn({ volume: this.name, replica: node, err }, 'could not delete from a copy the snapshots deleted while it was away; the next snapshot tries again'),
      );
    }
    const recorded = (this.state.record?.replicas ?? []).map((r) => r.node);
    if (Object.keys(missed).some((node) => !recorded.includes(node))) await clearMissedDeletes(this.context.store, this.name, this.context.self, [], recorded);
    const holders = copies.filter((node, i) => held[i].includes(snapshot) && !late.includes(node));
    if (holders.length > 0) throw alreadyExists(`snapshot ${this.name}@${snapshot} already exists (on ${holders.join(', ')})`);
  }

  /**
   * A snapshot taken on every copy is acknowledged once its mark is cleared. If the store does not
   * say in time that it is, the snapshot is not acknowledged, and not deleted either (the clear may
   * have committed, and other nodes list it): held by every copy, it stays, listed once the mark is
   * cleared (settleIfDue, or the next snapshot).
   */
  private async endSnapshot(snapshot: string): Promise<void> {
    try {
      await this.markOperation('snapshotting', undefined);
    } catch (err) {
      throw new WeftError('UNAVAILABLE', `volume ${this.name}: snapshot ${snapshot} was taken on every copy, but the cluster store did not record its end (${(err as Error).message}): it is listed once it does`);
    }
  }

  /**
   * A snapshot that the record marks as being taken when no control operation runs here was cut
   * short (its primary stopped part way, or lost the volume), and never acknowledged: held by every
   * copy, it is a snapshot like any other (one point of the write stream on each) and stays; held by
   * some, it is deleted from those (a failed copy's too, as far as it can be asked). Then the mark
   * is cleared. Refused, the mark left, while a copy cannot be asked or refuses the delete (a
   * client reads it there).
   */
  private async dropCutShortSnapshot(serving: Serving, snapshot: string): Promise<void> {
    const replicas = this.state.record?.replicas ?? [];
    const copies = this.everyCopy();
    const asked = await Promise.allSettled(copies.map((node) => this.context.copySnapshotNames(node, this.name)));
    const unasked = copies.filter((_, i) => asked[i].status === 'rejected');
    if (unasked.length > 0) throw new WeftError('UNAVAILABLE', `volume ${this.name}: snapshot ${snapshot}, cut short, is settled once ${unasked.join(', ')} can be asked: try again`);
    const holders = copies.filter((_, i) => (asked[i] as PromiseFulfilledResult<string[]>).value.includes(snapshot));
    const everyCopy = holders.length === copies.length;
    if (!everyCopy) {
      const failed = replicas.filter((r) => r.state === 'failed').map((r) => r.node);
      const kept = await this.deleteSnapshotFrom(serving, [...holders, ...failed], snapshot);
      const refused = kept.filter((node) => holders.includes(node));
      if (refused.length > 0) throw new WeftError('UNAVAILABLE', `volume ${this.name}: snapshot ${snapshot}, cut short, could not be deleted from ${refused.join(', ')} yet: try again`);
    }
    // Not another primary's mark, set since this one was read (this node stopped serving meanwhile).
    if (this.serving !== serving || this.state.record?.snapshotting !== snapshot) {
      throw new WeftError('UNAVAILABLE', `volume ${this.name}: stopped serving, or the record changed, while settling snapshot ${snapshot}`);
    }
    await this.markOperation('snapshotting', undefined);
    const what = everyCopy ? 'a snapshot cut short had been taken on every copy: kept' : 'deleted a snapshot cut short (its primary stopped as it was taken) from the copies that held it';
    this.context.logger.warn({ volume: this.name, snapshot, copies, holders }, what);
  }

  /** Deletes the snapshot from the nodes' copies: the nodes that may still hold it (those that did not answer, or refused). */
  private async deleteSnapshotFrom(serving: Serving, nodes: readonly string[], snapshot: string): Promise<string[]> {
    const outcomes = await Promise.allSettled(nodes.map((node) => this.controls.apply(node, { type: 'delete-snapshot', name: snapshot }, serving.epoch)));
    const kept = nodes.filter((node, i) => {
      const outcome = outcomes[i];
      return outcome.status === 'rejected' && !(outcome.reason instanceof WeftError && outcome.reason.kind === 'NOT_FOUND');
    });
    if (kept.length > 0) this.context.logger.warn({ volume: this.name, snapshot, nodes: kept }, 'a snapshot that was not acknowledged could not be deleted from every copy yet');
    return kept;
  }

  /**
   * The operation on the other copies, then this one (unless a newer primary has raised its epoch
   * meanwhile). A revert that fails part way is recorded.
   */
  private async applyEverywhere(serving: Serving, others: string[], local: VolumeLayer, operation: CopyOperation): Promise<void> {
    const done: string[] = [];
    let failedOn: string | undefined;
    try {
      for (const node of others) {
        this.checkStillServing(serving, operation);
        failedOn = node;
        await this.controls.apply(node, operation, serving.epoch);
        done.push(node);
      }
      failedOn = undefined;
      this.checkStillServing(serving, operation);
      const stale = (own: number) => failedPrecondition(`volume ${this.name}: this copy is at epoch ${own}, so this node (at ${serving.epoch}) is no longer its primary`);
      await this.context.localFence(this.name).controlAt(serving.epoch, () => applyTo(local, operation), stale);
    } catch (err) {
      if (operation.type === 'revert') await this.revertFailed(serving.device, [...done, ...(failedOn ? [failedOn] : [])], err as Error);
      throw err;
    }
  }

  /** The nodes of the copies that are not failed (being replaced), this one included. */
  private everyCopy(): string[] {
    return (this.state.record?.replicas ?? []).filter((r) => r.state !== 'failed').map((r) => r.node);
  }

  /**
   * Has the record mark an operation on snapshot as under way (none: that it has ended); resolves
   * once committed, fails if the store has not committed it within MARK_MS (it may still).
   */
  private async markOperation(kind: OperationMark, snapshot: string | undefined): Promise<void> {
    const mark = ++this.marks[kind];
    this.dispatch({ type: kind, snapshot });
    const committed = this.waitFor(kind, this.context.self, () => (this.state.record as VolumeRecord)[kind] === snapshot);
    try {
      await withDeadline(committed, MARK_MS, () => new WeftError('UNAVAILABLE', `volume ${this.name}: the cluster store did not record the ${kind} mark within ${MARK_MS / 1000} s`));
    } catch (err) {
      // The operation did not start (or end); a mark the store commits after all would be left set:
      // it is cleared once it is there, unless a later operation has marked it since (that one clears its own).
      const clear = () => (snapshot !== undefined && !this.closed && this.marks[kind] === mark ? this.markOperation(kind, undefined) : undefined);
      committed.then(clear, () => undefined).catch((late: unknown) => this.context.logger.warn({ volume: this.name, mark: kind, err: late }, 'a mark the store recorded late could not be cleared'));
      throw err;
    }
  }

  /**
   * A revert cannot be undone. This copy was not reverted (it comes last) and serves on as it was;
   * the copies the revert reached, and the one it failed on, may differ from it anywhere: they are
   * taken out as diverged before any change goes on, so that only a full copy brings them back and
   * none of them can be promoted meanwhile.
   */
  private async revertFailed(device: ReplicatedDevice, copies: string[], err: Error): Promise<void> {
    const reason = `a revert failed (${err.message}): this copy may differ from the primary's anywhere`;
    for (const node of copies) this.dispatch({ type: 'replica-diverged', replica: node, reason });
    await Promise.allSettled(copies.map((node) => device.diverged(node, reason)));
    this.context.logger.error({ volume: this.name, copies, err }, 'a revert failed part way: the copies it reached are out until a full copy');
  }

  /**
   * Resolves once no change of this kind for node is pending and the committed record satisfies
   * done; fails if this node stops serving first, or if, with no such change pending, the record
   * satisfies refused.
   */
  private waitFor(
    kind: RecordChange['kind'],
    node: string,
    done: (replicaState: ReplicaState | undefined) => boolean,
    refused: (replicaState: ReplicaState | undefined) => boolean = () => false,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const verdict = (s: BrainState) => {
        if (s.changes.some((c) => c.kind === kind && c.node === node)) return undefined;
        const state = s.record?.replicas.find((r) => r.node === node)?.state;
        return done(state) ? 'done' : refused(state) ? `the record has copy ${node} ${state ?? 'gone'}` : undefined;
      };
      this.waiters.push({ verdict, resolve, reject });
      this.settleWaiters();
    });
  }

  private settleWaiters(): void {
    const holding = !this.closed && ['raising', 'fencing', 'serving'].includes(this.state.role);
    this.waiters = this.waiters.filter((w) => {
      const verdict = w.verdict(this.state);
      if (verdict === 'done') w.resolve();
      else if (verdict !== undefined) w.reject(new Error(`volume ${this.name}: ${verdict}`));
      else if (!holding) w.reject(new Error(`volume ${this.name}: this node no longer serves it, so its record cannot change`));
      return verdict === undefined && holding;
    });
  }

  // ---- actions ----

  private async execute(action: BrainAction): Promise<void> {
    switch (action.type) {
      case 'txn':
        return this.runTxn(action);
      case 'raise-epoch':
        return this.raiseEpochs(action.epoch, action.replicas);
      case 'serve':
        return this.serve(action.epoch).catch((err: unknown) => {
          // Else it would hold the lease serving nothing: it steps down, and a member takes over.
          this.context.logger.error({ volume: this.name, epoch: action.epoch, err }, 'could not serve as primary');
          this.dispatch({ type: 'serve-failed', epoch: action.epoch, reason: (err as Error).message });
        });
      case 'stop-serving':
        return this.stopServing(action.reason);
      case 'resync':
        return this.resync(action.replica, action.kind);
      case 'wake':
        clearTimeout(this.wakeTimer);
        this.wakeTimer = setTimeout(() => this.dispatch({ type: 'tick' }), Math.max(0, action.atMs - brainClockMs())).unref();
        return;
      case 'report':
        this.context.logger.warn({ volume: this.name, health: action.health }, action.reason);
        return;
    }
  }

  /**
   * Runs a transaction; while the store cannot be reached it tries again, for as long as the brain
   * still waits for it (a transaction is conditioned on what was read, so a second try of one that
   * did commit is refused, never applied twice).
   */
  private async runTxn(action: Extract<BrainAction, { type: 'txn' }>): Promise<void> {
    if (action.delayMs) {
      await sleep(action.delayMs);
      // A promotion the brain gave up meanwhile (its node lease ended, and it tries again on the new
      // one under the same id): sent now, its commit would pass for the new one's, on the old lease.
      if (!this.awaits(action)) return;
    }
    for (let retry = false; ; retry = true) {
      if (this.closed) return;
      try {
        const result = await this.context.store.txn(action.txn);
        // A second try of a change that did commit (its answer was lost) is refused: the record says
        // whether it is there, else the primary would step down for nothing.
        const revision = !result.succeeded && retry && action.change ? await this.committedRevision(action.txn) : undefined;
        const committed = result.succeeded || revision !== undefined;
        if (!committed && action.change) await this.tellLeaseNow();
        if (action.id.startsWith('relet:')) {
          const what = committed ? 'primary lease put on the node lease it has since the store was out of reach' : 'primary lease not put back: the store has changed since this node read it';
          this.context.logger.info({ volume: this.name, nodeLease: action.nodeLease }, what);
        }
        this.dispatch({ type: 'txn-result', id: action.id, committed, revision: revision ?? result.revision });
        return;
      } catch (err) {
        this.context.logger.warn({ volume: this.name, txn: action.id, err }, 'cluster store transaction not sent; trying again');
        // A release is tried until the store answers: while this node lives its lease does too, and
        // no other copy can take over; it deletes this node's lease of that epoch only, never a later one.
        if (!action.id.startsWith('release@') && !this.awaits(action)) return;
        await sleep(TXN_RETRY_MS);
      }
    }
  }

  /**
   * After a change the store refused (it is conditioned on the primary lease key): the key as the
   * store holds it now, told to the brain before the refusal, which it judges by it. After an
   * outage longer than the node lease the key has lapsed, and the refusal may come before the
   * watch tells of that: the brain would take it for the lease lost to another, and stop serving,
   * where it relets the key. Read again until the store answers (it just did): the refusal judged on
   * the view from before would stop it just the same (an election after an outage fails reads a while).
   */
  private async tellLeaseNow(): Promise<void> {
    while (!this.closed) {
      try {
        const { kv, revision } = await this.context.store.read(volumeLeaseKey(this.name));
        const event = leaseAsRead(kv, revision);
        if (event) this.dispatch(event);
        return;
      } catch (err) {
        this.context.logger.warn({ volume: this.name, err }, 'could not read the primary lease after a refused change; trying again');
        await sleep(TXN_RETRY_MS);
      }
    }
  }

  /** The revision of the volume's record if it holds what txn would have put there (a change committed before), else undefined. */
  private async committedRevision(txn: Txn): Promise<number | undefined> {
    const put = txn.success.find((op): op is Extract<TxnOp, { type: 'put' }> => op.type === 'put' && op.key === volumeKey(this.name));
    if (!put) return undefined;
    const kv = await this.context.store.get(put.key);
    return kv?.value === put.value ? kv.modRevision : undefined;
  }

  /** Whether the brain still waits for this transaction: a change it sent, or its promotion or relet on the node lease it still has. */
  private awaits(action: Extract<BrainAction, { type: 'txn' }>): boolean {
    const s = this.state;
    if (action.id === s.reletId) return action.nodeLease === s.nodeLease;
    if (action.nodeLease !== undefined) return s.role === 'promoting' && action.id === `promote@${s.claimedEpoch}` && action.nodeLease === s.nodeLease;
    return s.sentId === action.id;
  }

  /** Own copy first (durably), then the others, by opening their replication export at the new epoch. */
  private async raiseEpochs(epoch: number, replicas: string[]): Promise<void> {
    const started = Date.now();
    const unreachable: string[] = [];
    const limitMs = this.context.config.ownRaiseLimitMs;
    await Promise.all(
      replicas.map(async (node) => {
        try {
          // A hung disk here must not hold the volume: past the limit it goes to the next member.
          if (node === this.context.self) await withDeadline(this.context.raiseLocalEpoch(this.name, epoch), limitMs, () => new Error(`its own copy did not take epoch ${epoch} within ${limitMs} ms`));
          else (await this.connectReplica(node, epoch, RAISE_TIMEOUT_MS)).close();
        } catch (err) {
          this.context.logger.warn({ volume: this.name, node, epoch, err }, 'could not raise the epoch of a copy');
          unreachable.push(node);
        }
      }),
    );
    this.context.logger.info({ volume: this.name, epoch, unreachable, ms: Date.now() - started }, 'epochs raised');
    this.dispatch({ type: 'epochs-raised', epoch, unreachable });
  }

  private async serve(epoch: number): Promise<void> {
    const started = Date.now();
    const record = this.state.record as VolumeRecord;
    const local = this.context.localCopy(this.name);
    if (!local) throw new Error(`volume ${this.name} has no local copy to serve from`);
    const remotes = record.replicas
      .filter((r) => r.node !== this.context.self && r.state !== 'failed')
      .map((r): RemoteReplica => ({ id: r.node, connect: () => this.connectReplica(r.node, epoch, REPLICA_TIMEOUT_MS) }));
    const log = this.context.absenceLog(this.name);
    const notices = {
      track: (node: string, absent: string, absence: Absence) => this.context.trackAbsence(node, this.name, epoch, absent, absence),
      forget: (node: string, absent: string) => this.context.trackAbsence(node, this.name, epoch, absent, null),
    };
    const activity = this.context.activityLog(this.name);
    const peerActivity = this.context.peerActivity(this.name);
    const activityNotices = { track: (node: string, revision: number, extents: readonly number[]) => this.context.trackActivity(node, this.name, epoch, revision, extents) };
    const checksums = {
      local: (offsetBytes: number, lengthBytes: number) => this.context.blockChecksums(this.context.self, this.name, epoch, offsetBytes, lengthBytes),
      remote: (node: string, offsetBytes: number, lengthBytes: number) => this.context.blockChecksums(node, this.name, epoch, offsetBytes, lengthBytes),
    };
    // Fenced at its epoch like the copies: once a newer primary has raised this copy's epoch, a
    // write of this one that still comes (its view of the store lags) does not land here either.
    const device = await ReplicatedDevice.open(this.context.localFence(this.name).guard(local, epoch), remotes, this.inSyncSetAt(epoch), {
      absences: log && { log, notices },
      activity: activity && { log: activity, epoch, notices: activityNotices, strays: peerActivity?.regions(), checksums },
      formerPrimaries: record.replicas.filter((r) => r.wasPrimary && r.state !== 'in-sync' && r.lastEpoch === epoch - 1).map((r) => r.node),
      onLocalFailure: (reason) => (this.servesAt(epoch) ? this.handOver(reason) : Promise.resolve()),
      growCopy: (node, sizeBytes) => {
        this.context.logger.warn({ volume: this.name, node, sizeBytes }, 'growing a copy that a resize cut short left smaller than this one');
        return this.controls.apply(node, { type: 'resize', sizeBytes }, epoch);
      },
    });
    if (this.state.role !== 'serving' || this.state.claimedEpoch !== epoch || this.closed) {
      device.close();
      return;
    }
    this.serving = { device, epoch };
    // A resize cut short by its primary's death grew this copy and not the record: the record follows.
    if (device.sizeBytes > record.sizeBytes) this.dispatch({ type: 'resized', sizeBytes: device.sizeBytes });
    // The strays are equal on every copy in step now: this node's record of them is done with.
    await peerActivity?.record(epoch, 0, []).catch(() => undefined);
    // openMs: connecting to the copies, making them equal where the last primary may have left
    // them unequal (settled), telling the copies of those away.
    const replicas = record.replicas.map((r) => `${r.node}:${r.state}`);
    this.context.logger.info({ volume: this.name, epoch, replicas, openMs: Date.now() - started, settled: device.settled }, 'serving as primary');
    this.settleIfDue();
    // This copy may have missed a snapshot's delete (its node down, or cut off from the deleting
    // one) and still be in sync: the snapshot goes now (listings leave it out meanwhile). In turn,
    // as a snapshot's own check of its name does it.
    const serving = this.serving;
    void this.inTurn(async () => {
      if (this.serving === serving) await this.deleteMissedSnapshots(serving, this.context.self);
    }).catch((err: unknown) => this.context.logger.warn({ volume: this.name, err }, 'could not delete from this copy the snapshots deleted while it was away; tried again at the next serving'));
  }

  /**
   * Its own copy failed a request the others took or could serve: the brain hands the volume to
   * another member. Resolves once this node has stopped serving, or at once if it serves on (no
   * other member), or after HAND_OVER_WAIT_MS (the store out of reach): the request then fails as
   * the copy's did.
   */
  private async handOver(reason: string): Promise<void> {
    const self = this.context.self;
    const already = this.handingOver();
    this.dispatch({ type: 'local-failed', reason });
    if (!this.handingOver()) return;
    if (!already) this.context.logger.error({ volume: this.name, reason }, 'the local copy failed: handing the volume over to an in-sync replica');
    await Promise.race([this.waitFor('out', self, (state) => state === 'out'), sleep(HAND_OVER_WAIT_MS, undefined, { ref: false })]);
  }

  /** Its own copy failed a request: it is taking itself out, for another member to serve. */
  private handingOver(): boolean {
    return this.state.changes.some((c) => c.kind === 'out' && c.node === this.context.self);
  }

  /**
   * Refuses to go on with a snapshot once this node no longer serves as it did when the snapshot
   * began, or is handing the volume over: its own copy lacks a write the others took, so the
   * snapshot would not be the same point of the write stream on every copy. (A resize or a revert
   * makes the copies it reaches equal whatever they held: one stopped part way costs more.)
   */
  private checkStillServing(serving: Serving, operation: CopyOperation): void {
    if (operation.type !== 'snapshot' || (this.serving === serving && !this.handingOver())) return;
    throw new WeftError('UNAVAILABLE', `volume ${this.name}: node ${this.context.self} stopped serving it, or is handing it over, as the snapshot was taken: try again`);
  }

  private stopServing(reason: string): void {
    const serving = this.serving;
    this.serving = undefined;
    if (!serving) return;
    serving.device.close();
    this.context.logger.warn({ volume: this.name, epoch: serving.epoch, reason }, 'stopped serving as primary');
  }

  private async resync(replica: string, kind: 'delta' | 'full'): Promise<void> {
    // The brain serves from the moment it asks for the device; the device may still be opening
    // (connecting, settling its logs). A resync asked for meanwhile waits for it: returning would
    // leave the copy marked resyncing, never resynced nor retried.
    if (!this.serving) await this.untilServing(SERVE_WAIT_MS);
    const serving = this.serving;
    if (!serving) {
      this.dispatch({ type: 'replica-failed', replica, reason: 'this node was not serving the volume yet; the resync is tried again', notItsFault: true });
      return;
    }
    const device = serving.device;
    const started = Date.now();
    try {
      // A control operation sent to it that got no answer must not change it once copying has begun.
      await this.controls.settled(replica);
      const record = this.state.record as VolumeRecord;
      const known = device.status().some((r) => r.id === replica);
      // A replacement: its node makes an empty copy first (or keeps the one it has). Also when this
      // serving knows the copy already (from the record): an earlier one may have stopped before its node made it.
      if (!known || record.replicas.some((r) => r.node === replica && r.replaces !== undefined)) {
        await this.context.createCopy(replica, this.name, record.sizeBytes, record.class);
      }
      if (!known) device.addRemote({ id: replica, connect: () => this.connectReplica(replica, serving.epoch, REPLICA_TIMEOUT_MS) });
      // Best effort: one in use there, or the store out of reach, must not fail the resync (a
      // failing one gets the copy replaced); the next serving or snapshot of the name sees to it.
      await this.deleteMissedSnapshots(serving, replica).catch((err: unknown) =>
        this.context.logger.warn({ volume: this.name, replica, err }, 'could not delete from a returning copy the snapshots deleted while it was away; tried again later'),
      );
      const { resyncKind, extra } = await this.formerPrimaryActivity(replica, kind);
      if (extra) await this.equalizeInStep(device, replica, extra);
      this.context.logger.info({ volume: this.name, replica, kind: resyncKind, formerPrimaryBytes: extra?.bytes }, 'resyncing a replica');
      const copiedBytes = await device.resync(replica, resyncKind, extra);
      this.context.logger.info({ volume: this.name, replica, kind: resyncKind, copiedBytes, ms: Date.now() - started }, 'replica resynced');
    } catch (err) {
      // The record still says resyncing, and the device does not tell the in-sync set about a copy
      // that was not a member yet: without this the copy stays resyncing for good, never retried.
      // Unless this node has stopped serving since: a resync of a later serving may be under way.
      if (this.serving === serving) this.dispatch({ type: 'replica-failed', replica, reason: `resync failed: ${(err as Error).message}`, notItsFault: err instanceof LocalCopyFault, ranMs: err instanceof NbdConnectionError ? Date.now() - started : undefined });
      throw err;
    }
  }

  /**
   * Before a copy comes back: the snapshots deleted while it was away go from it too
   * (missed-deletes.ts), and the list forgets the nodes that the record no longer names.
   */
  private async deleteMissedSnapshots(serving: Serving, replica: string, only?: string[]): Promise<void> {
    const missed = await missedDeletes(this.context.store, this.name);
    // A failed copy keeps its word until it is replaced: its node still lists the snapshot until then.
    const copies = (this.state.record?.replicas ?? []).map((r) => r.node);
    const names = (missed[replica] ?? []).filter((name) => only === undefined || only.includes(name));
    if (names.length === 0 && Object.keys(missed).every((node) => copies.includes(node))) return;
    await deleteEach(names, (snapshot) => this.controls.apply(replica, { type: 'delete-snapshot', name: snapshot }, serving.epoch));
    await clearMissedDeletes(this.context.store, this.name, replica, names, copies);
    if (names.length > 0) this.context.logger.info({ volume: this.name, replica, snapshots: names }, 'deleted from a returning copy the snapshots deleted while it was away');
  }

  /**
   * A former primary owed a full copy (it may hold writes the others lack) needs only a delta plus
   * the regions its activity log names, if that log is the one it kept as the primary it was.
   */
  private async formerPrimaryActivity(replica: string, kind: 'delta' | 'full'): Promise<{ resyncKind: 'delta' | 'full'; extra?: DirtyMap }> {
    const copy = this.state.record?.replicas.find((r) => r.node === replica);
    if (kind !== 'full' || !copy?.wasPrimary || !copy.lastEpoch) return { resyncKind: kind };
    const activity = await this.context.activityOf(replica, this.name).catch((err: unknown) => {
      this.context.logger.warn({ volume: this.name, replica, err }, 'could not read the activity log of a former primary: a full copy');
      return undefined;
    });
    return activity?.epoch === copy.lastEpoch ? { resyncKind: 'delta', extra: activity.map } : { resyncKind: 'full' };
  }

  /**
   * Where a former primary's activity log says its writes in flight when it stopped may have
   * reached some copies and not others, the copies in step are made equal to this one, which clients
   * have read since: else a later failover to another copy could show them other data there.
   */
  private async equalizeInStep(device: ReplicatedDevice, formerPrimary: string, regions: DirtyMap): Promise<void> {
    const verified = await equalizeRegions(device, this.context.self, regions);
    const repairedBlocks = verified.replicas.reduce((sum, r) => sum + r.checksumRepairedBlocks + r.mismatchRepairedBlocks, 0);
    this.context.logger.info({ volume: this.name, formerPrimary, comparedBlocks: regions.blocks, checkedBlocks: verified.checkedBlocks, repairedBlocks, skipped: verified.skippedReplicas }, 'copies in step made equal where a former primary had writes in flight');
  }

  private connectReplica(node: string, epoch: number, timeoutMs: number) {
    const address = this.context.nodeAddress(node);
    if (!address) return Promise.reject(new Error(`node ${node} is not registered in the cluster`));
    const from = { forwarder: this.replicationFrom, generation: ++this.replicationGeneration };
    return nbdReplica({ id: node, host: address.host, port: address.nbdPort, volume: this.name, epoch, timeoutMs, durableTimeoutMs: COPY_DURABLE_TIMEOUT_MS, from }).connect();
  }
}

/** A control operation on this node's own copy (below the stack). */
export function applyTo(copy: VolumeLayer, operation: CopyOperation): Promise<void> {
  switch (operation.type) {
    case 'snapshot':
      return copy.snapshot(operation.name);
    case 'resize':
      return copy.resize(operation.sizeBytes);
    case 'revert':
      return copy.revert(operation.snapshot);
    case 'delete-snapshot':
      throw new Error('a snapshot is deleted through the engine, not the stack');
  }
}

/**
 * The brain's clock: monotonic, so that a step of the wall clock (NTP correcting a bad clock at boot)
 * neither has a copy down for seconds replaced at once (--replica-timeout) nor delays its timers.
 */
function brainClockMs(): number {
  return performance.timeOrigin + performance.now();
}
