// The primary's side of synchronous replication, one more layer of a volume's stack: a write goes
// to the local copy below and to every remote replica kept in step, and is acknowledged once all
// have it (durably, for FUA and FLUSH). A remote that fails is taken out of the in-sync set, in the
// store, before any write it missed is acknowledged; what it misses is kept in its dirty map, and a
// delta resync later copies only that. A new or replaced replica gets a full copy of what the local
// copy has allocated (thin), also while the volume stays online.
//
// What an absent replica lacks must outlive this primary (a restart, a failover): every copy in
// step keeps an absence log (absence-log.ts). When a replica leaves, the copies in step are told
// (with what it has missed so far) before a write it missed is acknowledged; from then on each
// logs the changes it receives itself. A change sent before they were told waits for a telling
// that covers it. A replica coming back is told of the others away before it receives a write.
//
// Reads are served from the local copy only under a read lease: every copy that could be promoted
// (a member of the in-sync set) has taken a change from this primary sent within the lease, which
// vouches that no newer primary was raised there meanwhile (epoch-fence.ts). When the changes do
// not keep it up, a flush to those copies renews it; a copy that cannot take one leaves the in-sync
// set first. So a primary that lost its place and cannot learn it serves no stale read.

import { isAllZero } from '../buffers';
import { withDeadline } from '../deadline';
import { ChecksumError, IoError } from '../errors';
import { InFlightWindow } from '../in-flight-window';
import { totalBytes, type Pieces } from '../pieces';
import type { Extent, VolumeLayer, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughLayer } from '../volume/pass-through-device';
import { READ_LEASE_MS } from '../volume/epoch-fence';
import { Quiesce } from '../volume/quiesce';
import { RangeLock } from '../volume/range-lock';
import { BLOCK_BYTES } from '../store/block-size';
import type { Absence, AbsenceLog } from './absence-log';
import type { ActivityLog } from './activity-log';
import { DirtyMap, type DirtyRun } from './dirty-map';
import type { InSyncSet } from './in-sync-set';
import { ResyncPacer } from './resync-pacer';
import type { RemoteReplica, ReplicaConnection } from './remote-replica';

export type ReplicaState = 'in-sync' | 'out' | 'resyncing';

export interface ReplicaStatus {
  id: string;
  state: ReplicaState;
  /** Bytes the replica lacks (out), or still has to receive (resyncing). */
  behindBytes: number;
  /** Bytes copied to it by resyncs since this primary started. */
  resyncCopiedBytes: number;
  /**
   * The size of the resync under way (0 when none is): the bytes it has copied plus those it still
   * has to (behindBytes), so that `resyncTotalBytes - behindBytes` of it are done. It grows while a
   * full resync scans the local copy for what to copy, and when a write it missed marks more.
   */
  resyncTotalBytes: number;
  /** What it lacks is not known (a new or replaced replica, or a full resync that failed early): only a full resync brings it back. */
  needsFullCopy: boolean;
}

export type ResyncKind = 'delta' | 'full';

/** How the primary has the other copies' absence logs track an absent replica (ReplicaService.TrackAbsence). */
export interface AbsenceNotices {
  /** The copy on node `to` logs what `absent` misses from now on, merged with absence; resolves once on its disk. */
  track(to: string, absent: string, absence: Absence): Promise<void>;
  forget(to: string, absent: string): Promise<void>;
}

/** How the primary has the copies record what its activity log names (ReplicaService.TrackActivity, peer-activity.ts). */
export interface ActivityNotices {
  /** The copy on node `to` records the extents, as of the log's revision; resolves once on its disk. */
  track(to: string, revision: number, extents: readonly number[]): Promise<void>;
}

/**
 * The copies' block checksums (ReplicaService.BlockChecksums): the CRC-32C of each block of a range
 * as a copy reads it, from its block maps, so that copies compare without moving their data.
 */
export interface CopyChecksums {
  local(offsetBytes: number, lengthBytes: number): Promise<Uint32Array>;
  remote(id: string, offsetBytes: number, lengthBytes: number): Promise<Uint32Array>;
}

/** What the open's repair of the regions a former primary may have left unequal did, in bytes (summed over the copies in step). */
export interface SettledActivity {
  /** Looked at: compared by checksum, or copied whole where a copy could not give its checksums. */
  comparedBytes: number;
  copiedBytes: number;
  /** Copied whole: no checksums were to be had (e.g. a node of an older version). */
  uncomparedBytes: number;
}

/** A remote in sync with the local copy, and the primary's connection to it. */
export interface InSyncPeer {
  id: string;
  connection: ReplicaConnection;
}

export interface ReplicationOptions {
  /** While clients do I/O, the share of the time a resync may spend working (default 0.1; see ResyncPacer). */
  resyncBusyShare?: number;
  /** The local copy's absence log (its changes pass the log's tracking layer), and the word to the others'. */
  absences?: { log: AbsenceLog; notices: AbsenceNotices };
  /**
   * This primary's activity log, the epoch it serves at (activity-log.ts), and its cap in extents
   * (default 1024). With notices, every copy a write goes to has recorded the write's extents before
   * it is sent; strays: where a former primary's writes may have left the copies unequal, as this
   * copy's record of its log has it (made equal before the first change, as the log's own regions;
   * with checksums, only the blocks whose checksums differ are copied).
   */
  activity?: { log: ActivityLog; epoch: number; capExtents?: number; notices?: ActivityNotices; strays?: DirtyMap; checksums?: CopyChecksums };
  /**
   * Remotes out that lack nothing written before this open, though they may hold writes the others
   * lack: the primary just before this one. What they hold, their own activity log says (resync's extra).
   */
  formerPrimaries?: readonly string[];
  /**
   * The local copy failed a request that a remote in sync took or could serve (a failing or full
   * disk here): the request fails once this has settled. The cluster hands the volume to a remote
   * meanwhile, so that the failure reads as "no longer the primary" and the request is sent again
   * to the new one.
   */
  onLocalFailure?: (reason: string) => Promise<void>;
  /**
   * Grows a remote's copy to sizeBytes. A primary that died part way through a resize leaves some
   * copies grown and others not; a copy smaller than this one is grown before it is written to.
   */
  growCopy?: (replicaId: string, sizeBytes: number) => Promise<void>;
}

/** A resync copies at most this much per request. */
const RESYNC_RUN_BYTES = 1024 * 1024;
/** The open's repair compares the copies' checksums this much at a time (16 Ki blocks, 64 KiB of checksums). */
const COMPARE_RUN_BYTES = 64 * 1024 * 1024;
/** Runs a resync copies at once: the local reads of some overlap the remote's writes of others. */
const RESYNC_DEPTH = 4;
/** A full resync asks the local copy for its allocation this much at a time, client writes held off the range meanwhile. */
const SCAN_WINDOW_BYTES = 64 * 1024 * 1024;
/**
 * A workload that never flushes would grow the activity log to every extent it touched, and the
 * repair after a crash of the primary with it. Past this many extents (4 GiB) the primary flushes
 * every copy itself, which lets the log shrink, as DRBD does when its activity log is full. Large
 * enough that a working set of a few GiB never causes such a flush.
 */
const ACTIVITY_LOG_CAP_EXTENTS = 1024;
/**
 * Rounds in which a copy about to be a target is told the activity log while changes go on; the
 * next is told with changes held (tellNewTarget). Writes streaming into new extents, or flushes
 * letting extents leave, change the log faster than a round (a call and an fdatasync there) ends.
 */
const TELL_ROUNDS_UNHELD = 3;
/**
 * How long that last telling waits for the changes in flight to end, new ones held meanwhile: one
 * that waits long (on the store, to take a copy out) would hold every write behind it. Past this,
 * the resync fails and is tried again.
 */
const HELD_DRAIN_MS = 1000;
/**
 * The read lease as this primary counts it, from when it sent the change a copy took: shorter than
 * the copy's (READ_LEASE_MS from when it took it), for clocks that run at other rates.
 */
const READ_LEASE_COUNTED_MS = READ_LEASE_MS * 0.8;
/** A read that cannot get the lease within this fails (EIO): a copy keeps taking longer than the lease to answer. */
const READ_LEASE_WAIT_MS = 10_000;

/** What the primary knows of one remote replica. */
class Remote {
  state: ReplicaState = 'in-sync';
  connection: ReplicaConnection | undefined;
  /** Blocks written to it since its last completed flush: a crash of its node may lose them. */
  unflushed = new DirtyMap();
  /** The unflushed maps of the flushes in flight to it. */
  readonly flushing = new Set<DirtyMap>();
  /**
   * Takes what it has unflushed as the flush about to be sent covers it: call settled() once that
   * flush succeeded (a failed one leaves the map among what it may lack).
   */
  flushStarts(): DirtyMap {
    const taken = this.unflushed;
    this.unflushed = new DirtyMap();
    this.flushing.add(taken);
    return taken;
  }

  /** A flush through the connection; what it covers is no longer unflushed once it succeeded. */
  async flushThrough(connection: ReplicaConnection): Promise<void> {
    const taken = this.flushStarts();
    await connection.flush();
    this.flushing.delete(taken);
  }
  /** Blocks it lacks, while out or resyncing. */
  dirty = new DirtyMap();
  /**
   * It may be in the in-sync set as the store has it: true until its removal is committed, and
   * again from the moment its return is asked for. While it is out and still a member, no write
   * it missed may be acknowledged.
   */
  member = true;
  /** Its removal from the in-sync set, while being committed. */
  removal: Promise<void> | undefined;
  /** Its dirty map does not say all it lacks: it needs a full resync. */
  needsFull = false;
  copiedBytes = 0;
  /** copiedBytes when the resync under way began. */
  copiedAtResyncStart = 0;
  /** Changes (and failed flushes) it missed, counted as they are marked dirty; and how many of those the in-step copies have logged. */
  misses = 0;
  loggedMisses = 0;
  /** The in-step copies log the changes sent after this one (by sequence) themselves; Infinity until they have been told. */
  trackedAfter = Number.POSITIVE_INFINITY;
  /**
   * The last change sent (by sequence) when it last went out. One sent up to it and ending later
   * reached its connection of then, which is gone: what it took there (a crash of its node may have
   * lost it) does not count for it, should it be resyncing by then; such a change marks it dirty.
   */
  outAfter = 0;
  /** Its absence, being told to the copies' logs. */
  logging: Promise<void> | undefined;
  /** Its record no longer names it (removeRemote): its absence is no longer logged. */
  removed = false;
  /** When (performance.now()) the last change it took was sent: its part of the read lease. */
  vouchedFrom = Number.NEGATIVE_INFINITY;

  constructor(readonly replica: RemoteReplica) {}
}

export class ReplicatedDevice extends PassThroughLayer {
  /** Replaced, never changed in place: a write in flight holds the list of targets it was sent to. */
  private remotes: Remote[];
  /** Changes and flushes pass it; a control operation closes it (paused). */
  private readonly gate = new Quiesce();
  /** Orders resync copies (exclusive) against client writes (shared) while a resync runs. */
  private readonly copyLock = new RangeLock();
  /** Resyncs and repairs running: while there are any, changes take the copy lock (shared). */
  private resyncs = 0;
  private closed = false;
  /** Changes and flushes in flight, by number: a resync waits for those sent before the replica was a target again. */
  private readonly inFlight = new InFlightWindow();
  private tracks = 0;
  private readonly pacer: ResyncPacer;
  /** Changes and flushes sent, counted (each gets the next number). */
  private sent = 0;
  private readonly absences: ReplicationOptions['absences'];
  private readonly activity: ActivityLog | undefined;
  private readonly activityCap: number;
  /** The flush settleActivityLog() started, while it runs. */
  private settling: Promise<void> | undefined;
  private readonly activityNotices: ActivityNotices | undefined;
  /** Every target has recorded the activity log as of this revision (or a later one). */
  private toldRevision = -1;
  /** The round of notices under way, if one is. */
  private telling: Promise<void> | undefined;
  private readonly onLocalFailure: ReplicationOptions['onLocalFailure'];
  private readonly growCopy: ReplicationOptions['growCopy'];
  /** What open() found unequal and copied, where a former primary may have left the copies unequal. */
  readonly settled: SettledActivity = { comparedBytes: 0, copiedBytes: 0, uncomparedBytes: 0 };
  private readonly checksums: CopyChecksums | undefined;
  /** The renewal of the read lease under way, if one is. */
  private renewing: Promise<void> | undefined;

  private constructor(below: VolumeLayer, remotes: RemoteReplica[], private readonly inSync: InSyncSet, options: ReplicationOptions) {
    super(below);
    this.remotes = remotes.map((r) => new Remote(r));
    this.pacer = new ResyncPacer(options.resyncBusyShare ?? 0.1);
    this.absences = options.absences;
    this.activity = options.activity?.log;
    this.activityCap = options.activity?.capExtents ?? ACTIVITY_LOG_CAP_EXTENTS;
    this.activityNotices = options.activity?.notices;
    this.checksums = options.activity?.checksums;
    this.onLocalFailure = options.onLocalFailure;
    this.growCopy = options.growCopy;
  }

  /**
   * Connects to the remotes in the in-sync set; one that cannot be reached is removed from the set,
   * and if that removal is refused the open fails. A remote outside the set starts out, lacking
   * what the local copy's absence log says, or needing a full resync if it has no word of it.
   */
  static async open(below: VolumeLayer, remotes: RemoteReplica[], inSync: InSyncSet, options: ReplicationOptions = {}): Promise<ReplicatedDevice> {
    const members = new Set(inSync.members());
    const device = new ReplicatedDevice(below, remotes, inSync, options);
    try {
      await device.opened(members, options);
    } catch (err) {
      device.close(); // the copies it did connect to are let go: they would count it as a user of theirs
      throw err;
    }
    return device;
  }

  /** open(): every connection tried (all settled before a failure is thrown), the activity settled, the log started. */
  private async opened(members: ReadonlySet<string>, options: ReplicationOptions): Promise<void> {
    const connected = await Promise.allSettled(
      this.remotes.map(async (remote) => {
        if (!members.has(remote.replica.id)) {
          remote.state = 'out';
          remote.member = false;
          const logged = options.absences?.log.absence(remote.replica.id);
          if (logged && !logged.full) remote.dirty = logged.map;
          else remote.needsFull = !options.formerPrimaries?.includes(remote.replica.id);
          return;
        }
        try {
          remote.connection = await this.connect(remote);
        } catch (err) {
          await this.drop(remote, `cannot be written to: ${(err as Error).message}`);
        }
      }),
    );
    const failed = connected.find((outcome) => outcome.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (options.activity) await this.settleActivity(options.activity, options.formerPrimaries ?? []);
    await this.startLogging();
    // Only now, the regions it named are in the copies in step and in the absence log's entries
    // of those out (on disk): a crash or a failed save before leaves it as it was, for the next open.
    if (options.activity) await options.activity.log.reset(options.activity.epoch);
  }

  /**
   * The size of the largest copy connected now, as it connected: larger than this one's when a
   * resize whose primary died part way grew that one and not this (the runner settles it).
   */
  get largestCopyBytes(): number {
    let largest = this.sizeBytes;
    for (const remote of this.remotes) if (remote.connection && remote.connection.sizeBytes > largest) largest = remote.connection.sizeBytes;
    return largest;
  }

  /** A connection to a remote, its copy grown first if it is smaller than this one (growCopy). */
  private async connect(remote: Remote): Promise<ReplicaConnection> {
    const connection = await remote.replica.connect();
    if (connection.sizeBytes >= this.sizeBytes) return connection;
    try {
      if (!this.growCopy) throw new Error('nothing here grows copies');
      await this.growCopy(remote.replica.id, this.sizeBytes);
      return connection; // the export's size is checked per request, so the connection sees the new one
    } catch (err) {
      connection.close();
      throw new Error(`its copy is ${connection.sizeBytes} bytes, this one ${this.sizeBytes}, and it could not be grown: ${(err as Error).message}`);
    }
  }

  /**
   * Before serving: where this copy's activity log says the copies may differ (it was the primary
   * just before, and stopped without a flush everywhere), they are made equal to this copy, which
   * serves them from now on: the blocks that differ are copied to each copy in step, and the
   * regions are marked dirty for those out. The same for strays, where a former primary that may
   * never come back had writes in flight. A log of an older epoch than the last counts too: this
   * node may have claimed the epoch between and stopped before it served (or before it could save
   * what the copies out owe). The copies out owe the regions whatever happened since: this copy,
   * about to serve, may hold there what they lack, and copying more to them is always safe. The
   * log starts afresh at this epoch once the copies out have them in the absence log (opened()).
   */
  private async settleActivity(activity: NonNullable<ReplicationOptions['activity']>, formerPrimaries: readonly string[]): Promise<void> {
    const { log, strays } = activity;
    const own = log.regions();
    const regions = own.clone();
    if (strays) regions.merge(strays);
    if (regions.blocks > 0) {
      // All settled before a failure is thrown: open() then closes the connections, and a copy whose
      // equalizing was cut short by that close would be taken out of the in-sync set, though only
      // this copy failed.
      const outcomes = await Promise.allSettled(
        this.remotes.map(async (remote) => {
          if (remote.state === 'out') {
            // The former primary that sent the strays gets them through its own log (resync's extra).
            remote.dirty.merge(formerPrimaries.includes(remote.replica.id) ? own : regions);
            return;
          }
          try {
            await this.equalize(remote, regions);
          } catch (err) {
            if (err instanceof OwnCopyFailure) throw err.cause; // this copy cannot serve: the copies are not to blame
            this.markOut(remote);
            remote.dirty.merge(regions);
            await this.removed(remote, `the regions its last primary may have left unequal could not be copied to it: ${(err as Error).message}`);
          }
        }),
      );
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
  }

  /** Makes a remote in step equal to the local copy in regions (the blocks that differ), and flushes it. */
  private async equalize(remote: Remote, regions: DirtyMap): Promise<void> {
    const connection = remote.connection as ReplicaConnection;
    const { unequal, comparedBytes, uncomparedBytes } = await this.unequalBlocks(remote.replica.id, regions);
    this.settled.comparedBytes += comparedBytes;
    this.settled.uncomparedBytes += uncomparedBytes;
    for (const run of unequal.runs(RESYNC_RUN_BYTES)) {
      const data = await this.below.read(run.offsetBytes, run.lengthBytes).catch((err: unknown) => Promise.reject(new OwnCopyFailure(err)));
      await connection.write(run.offsetBytes, data, false);
      this.settled.copiedBytes += run.lengthBytes;
    }
    await connection.flush();
  }

  /**
   * The blocks of regions (within the volume) where a remote's copy differs from the local one, by
   * the checksums their block maps hold; all of a range where either cannot give its checksums
   * (copying is always safe). The remote must be at this primary's epoch, which drained the writes
   * of the primaries before. comparedBytes: the bytes of regions within the volume; uncomparedBytes:
   * those taken whole.
   */
  async unequalBlocks(remoteId: string, regions: DirtyMap): Promise<{ unequal: DirtyMap; comparedBytes: number; uncomparedBytes: number }> {
    const unequal = new DirtyMap();
    let comparedBytes = 0;
    let uncomparedBytes = 0;
    for (const run of regions.runs(COMPARE_RUN_BYTES)) {
      const end = Math.min(this.sizeBytes, run.offsetBytes + run.lengthBytes);
      if (end <= run.offsetBytes) continue;
      comparedBytes += end - run.offsetBytes;
      const checksums = this.checksums && (await this.compare(remoteId, run.offsetBytes, end));
      if (!checksums) {
        unequal.mark(run.offsetBytes, end - run.offsetBytes);
        uncomparedBytes += end - run.offsetBytes;
        continue;
      }
      const [local, remote] = checksums;
      for (let i = 0; i < local.length; i++) if (local[i] !== remote[i]) unequal.mark(run.offsetBytes + i * BLOCK_BYTES, BLOCK_BYTES);
    }
    return { unequal, comparedBytes, uncomparedBytes };
  }

  /** The local and the remote's checksums of [offsetBytes, end), or undefined if either cannot give them whole. */
  private async compare(remoteId: string, offsetBytes: number, end: number): Promise<[Uint32Array, Uint32Array] | undefined> {
    const checksums = this.checksums as CopyChecksums;
    const lengthBytes = end - offsetBytes;
    const both = await Promise.all([checksums.local(offsetBytes, lengthBytes), checksums.remote(remoteId, offsetBytes, lengthBytes)]).catch(() => undefined);
    const blocks = lengthBytes / BLOCK_BYTES;
    return both && both[0].length === blocks && both[1].length === blocks ? both : undefined;
  }

  /**
   * Resolves once every target has recorded the extents of the range (their record of this
   * primary's activity log): one round of notices at a time, each with the whole log.
   */
  private async tellActivity(offsetBytes: number, lengthBytes: number): Promise<void> {
    const log = this.activity as ActivityLog;
    while (!log.namedAsOf(offsetBytes, lengthBytes, this.toldRevision)) {
      this.telling ??= this.tellRound(log).finally(() => (this.telling = undefined));
      await this.telling;
    }
  }

  /**
   * Tells every target the whole log; a target that cannot be told is dropped (it is failing). A
   * member out of the targets is removed first: not told, it could still be promoted (should this
   * node die before its removal commits) without the extents told now in its record of the log,
   * while the others hold there a write it lacks (sent, never acknowledged), and serve on unequal.
   */
  private async tellRound(log: ActivityLog): Promise<void> {
    // Again until none is left: another may go out (a write failing on it) while these are removed,
    // and the targets are taken right after the last look, with no wait between.
    for (let leaving = this.leavingMembers(); leaving.length > 0; leaving = this.leavingMembers()) {
      await Promise.all(leaving.map((r) => this.removed(r, 'it is out'))).catch((err: unknown) => {
        throw new IoError('EIO', `not acknowledged: a replica out could not be removed from the in-sync set: ${(err as Error).message}`);
      });
    }
    const notices = this.activityNotices as ActivityNotices;
    const revision = log.revision;
    const extents = log.list();
    const tell = (target: Remote) =>
      notices.track(target.replica.id, revision, extents).catch((err: unknown) => this.drop(target, `it could not record the activity log: ${(err as Error).message}`));
    await Promise.all(this.targets().map(tell));
    this.toldRevision = Math.max(this.toldRevision, revision);
  }

  /** Members of the in-sync set that are out: each is removed before a round tells the targets. */
  private leavingMembers(): Remote[] {
    return this.remotes.filter((r) => r.member && r.state === 'out');
  }

  /**
   * Tells a remote about to be a target the whole log, again until the log stays as told, and makes
   * it a target (become) in the same step as that last look: an extent added between the two would
   * reach it with a write, told only to the targets before it. After TELL_ROUNDS_UNHELD rounds that
   * the log outran, the last is told with changes held (no write or flush inside, none let in), so
   * that it stays as told: else a resync under a steady stream of writes would never begin.
   */
  private async tellNewTarget(remote: Remote, become: () => void): Promise<void> {
    const log = this.activity;
    const notices = this.activityNotices;
    if (log && notices) {
      const tell = () => notices.track(remote.replica.id, log.revision, log.list());
      for (let round = 0, told = -1; told !== log.revision; round++) {
        if (round === TELL_ROUNDS_UNHELD) {
          await this.heldBriefly(remote.replica.id, async () => {
            await tell();
            become();
          });
          return;
        }
        told = log.revision;
        await tell();
      }
    }
    become();
  }

  /** Runs operation with no change in flight and none let in, if those in flight end within HELD_DRAIN_MS; else fails. */
  private async heldBriefly(replicaId: string, operation: () => Promise<void>): Promise<void> {
    const drained = this.gate.pause();
    try {
      await withDeadline(drained, HELD_DRAIN_MS, () => new LocalCopyFault('EIO', `replica ${replicaId}: the writes in flight did not end within ${HELD_DRAIN_MS} ms to tell it the activity log; its resync is tried again`));
      await operation();
    } finally {
      this.gate.resume();
    }
  }

  /**
   * Before the first change: the local log keeps only the remotes that are out, with what they lack
   * on disk (else the open fails: what the activity log gave them would be lost with its reset),
   * and the copies in step are told. One that cannot be told now is told by the first change it misses.
   */
  private async startLogging(): Promise<void> {
    if (!this.absences) return;
    const { log } = this.absences;
    const out = this.remotes.filter((r) => r.state === 'out');
    for (const id of log.tracked()) if (!out.some((r) => r.replica.id === id)) await log.forget(id).catch(() => undefined);
    // Both started in this turn, so that the log's saves are shared (one file write covers them all).
    const [saved] = await Promise.allSettled([
      Promise.all(out.map((r) => log.track(r.replica.id, { full: r.needsFull, map: r.dirty.clone() }))),
      Promise.allSettled(out.map((r) => this.logAbsence(r))),
    ]);
    if (saved.status === 'rejected') throw saved.reason;
  }

  /**
   * A copy that may differ anywhere from the local one (a revert reached it, or failed on it half
   * done): out from now on, and owed a full copy, in the copies' absence logs too (whoever is
   * promoted next owes it the same). Resolves once both are done.
   */
  async diverged(replicaId: string, reason: string): Promise<void> {
    const remote = this.remotes.find((r) => r.replica.id === replicaId);
    if (!remote) return;
    if (remote.state !== 'out') this.markOut(remote);
    remote.needsFull = true;
    await Promise.all([this.removed(remote, reason), this.logged(remote, ++remote.misses)]);
  }

  /**
   * A copy that could not be made equal to the local one in regions (replica-verify.ts
   * equalizeRegions): out from now on, owing the regions besides what it missed, in the copies'
   * absence logs first. Resolves once those have it and it is out of the in-sync set.
   */
  async owes(replicaId: string, regions: DirtyMap, reason: string): Promise<void> {
    const remote = this.remotes.find((r) => r.replica.id === replicaId);
    if (!remote) return;
    if (remote.state !== 'out') this.markOut(remote); // a resync under way then fails, and the next one copies the regions
    remote.dirty.merge(regions);
    const miss = ++remote.misses;
    await this.logged(remote, miss);
    await this.removed(remote, reason);
  }

  /** A new copy (a replacement): out, until a full resync brings it in. */
  addRemote(replica: RemoteReplica): void {
    if (this.remotes.some((r) => r.replica.id === replica.id)) return;
    const remote = new Remote(replica);
    remote.state = 'out';
    remote.member = false;
    remote.needsFull = true;
    this.remotes = [...this.remotes, remote];
  }

  /**
   * A copy its record no longer names (replaced, its replacement in sync): no longer written to,
   * tracked while away, nor told of to the other copies.
   */
  async removeRemote(replicaId: string): Promise<void> {
    const remote = this.remotes.find((r) => r.replica.id === replicaId);
    if (!remote) return;
    if (remote.state !== 'out') this.markOut(remote); // a resync of it under way then fails
    this.remotes = this.remotes.filter((r) => r !== remote);
    remote.removed = true;
    await remote.logging?.catch(() => undefined); // forgotten after, not before, the last it is logged
    await this.forgetAbsence(remote);
  }

  status(): ReplicaStatus[] {
    return this.remotes.map((r) => ({
      id: r.replica.id,
      state: r.state,
      behindBytes: r.dirty.bytes,
      resyncCopiedBytes: r.copiedBytes,
      resyncTotalBytes: r.state === 'resyncing' ? r.copiedBytes - r.copiedAtResyncStart + r.dirty.bytes : 0,
      needsFullCopy: r.needsFull,
    }));
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    const lengthBytes = Buffer.isBuffer(data) ? data.length : totalBytes(data);
    return this.replicate(offsetBytes, lengthBytes, () => this.below.write(offsetBytes, data, fua), (c) => c.write(offsetBytes, data, fua));
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.replicate(offsetBytes, lengthBytes, () => this.below.trim(offsetBytes, lengthBytes, fua), (c) => c.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.replicate(
      offsetBytes,
      lengthBytes,
      () => this.below.writeZeroes(offsetBytes, lengthBytes, options),
      (c) => c.writeZeroes(offsetBytes, lengthBytes, options.fua, options.noHole),
    );
  }

  /** Durable everywhere in the set before it resolves; what a remote had not flushed is dirty if it fails. */
  override async flush(): Promise<void> {
    const paused = this.gate.enter();
    if (paused) await paused;
    try {
      // In flight as changes are: a resync waits for it, else its end would find the copy added
      // back since, not among its targets, and take it out again.
      await this.tracked(this.flushNow());
    } finally {
      this.gate.leave();
    }
  }

  /**
   * Runs a control operation (a snapshot, a resize) with no change in flight and none let in: the
   * copies it is applied to then hold the same point of the write stream.
   */
  paused<T>(operation: () => Promise<T>): Promise<T> {
    return this.gate.during(operation);
  }

  /**
   * A flush of every copy, one at a time, started by the device itself so that its activity log
   * shrinks. Another follows while the log is over its cap and the last one let extents leave
   * (writes to new ones may have come meanwhile); else the next write over the cap starts one (a
   * failed flush drops its copies as any flush does).
   */
  private settleActivityLog(): void {
    if (this.settling) return;
    const log = this.activity as ActivityLog;
    const left = log.left;
    this.settling = this.flush().then(
      () => {
        this.settling = undefined;
        if (log.extents > this.activityCap && log.left > left) this.settleActivityLog();
      },
      () => (this.settling = undefined),
    );
  }

  private async flushNow(): Promise<void> {
    const seq = ++this.sent;
    const flushing = this.activity?.flushStarted();
    const targets = this.targets();
    const covered = targets.map((r) => r.flushStarts());
    const sentAt = performance.now();
    const outcomes = await Promise.allSettled([this.below.flush(), ...targets.map((r) => (r.connection as ReplicaConnection).flush())]);
    for (let i = 0; i < targets.length; i++) {
      if (outcomes[i + 1].status !== 'fulfilled') continue;
      targets[i].flushing.delete(covered[i]);
      targets[i].vouchedFrom = Math.max(targets[i].vouchedFrom, sentAt);
    }
    // Extents leave the activity log only when every copy that could be promoted took the flush: a
    // member out of the targets (its removal not yet committed) may lack their writes (its node
    // restarted) and still be promoted, and the log is what makes the copies equal then.
    const everyMember = this.remotes.every((r) => !r.member || targets.includes(r));
    if (flushing && everyMember && outcomes.every((o) => o.status === 'fulfilled')) this.activity?.flushed(flushing);
    await this.settle(targets, outcomes, 0, 0, seq);
  }

  /**
   * Brings an out replica back: reconnects, sends it new writes from now on, copies the blocks in
   * its dirty map (read here, written there) while writes go on, then asks the in-sync set to take
   * it back. Resolves with the bytes copied.
   *
   * extra: more it may lack or differ on (a former primary's activity log): the blocks of it that
   * differ from the local copy by checksum (all of it without checksums) are copied too.
   *
   * A full resync (kind 'full', or any resync of a replica that needs one) first replaces the dirty
   * map with every block the local copy has allocated, and makes the rest read as zeroes there too
   * (it may hold stale data from an older life), so that it copies the allocated bytes only.
   */
  async resync(replicaId: string, kind: ResyncKind = 'delta', extra?: DirtyMap): Promise<number> {
    const remote = this.remotes.find((r) => r.replica.id === replicaId);
    if (!remote) throw new Error(`no replica ${replicaId}`);
    if (remote.state !== 'out') throw new Error(`replica ${replicaId} is ${remote.state}, not out`);
    if (this.closed) throw new IoError('ESHUTDOWN', `the replication of this volume has closed: replica ${replicaId} is not resynced`);
    let connection: ReplicaConnection;
    try {
      await this.removed(remote, 'it is being resynced'); // out of the set before it comes back
      await this.tellAbsences(remote); // before it is sent a change: it logs, from then on, what the others away miss
      connection = await this.connect(remote);
    } catch (err) {
      if (extra) remote.dirty.merge(extra); // for the next try, which may have no extra
      throw err;
    }
    // Connected, it is at this primary's epoch: of extra, it lacks what differs from the local copy
    // now. What changes here from now until it is a target is marked dirty as it happens.
    if (extra) remote.dirty.merge((await this.unequalBlocks(replicaId, extra)).unequal);
    await this.tellNewTarget(remote, () => {
      remote.connection = connection; // a target from here on
      remote.state = 'resyncing';
      this.resyncs++;
      remote.copiedAtResyncStart = remote.copiedBytes;
    }).catch((err: unknown) => {
      connection.close();
      throw err;
    });
    // Each copy in step is forgotten there: one it was told of that came back before this one was a
    // target, or one that came back while this one was out (told to log for it before it went), was
    // forgotten only by the targets then, and this one would log for it for good, every new block a
    // save of its whole log. (A forget that crosses a later notice costs a full copy, never a block.)
    for (const other of this.remotes) if (other !== remote && other.state === 'in-sync') void this.absences?.notices.forget(remote.replica.id, other.replica.id).catch(() => undefined);
    try {
      // Changes sent before it was a target mark its dirty map as they end; they end first.
      await this.inFlightEnded();
      if (kind === 'full' || remote.needsFull) {
        remote.needsFull = true; // until the scan is through, its dirty map is partial
        remote.dirty = new DirtyMap();
        for (let at = 0; at < this.sizeBytes; ) at = await this.pacer.step(() => this.scan(remote, connection, at));
        // Its dirty map says all it lacks once the zeroes are durable (they are not in it: marking
        // them unflushed would make a delta resync copy every hole if it failed now).
        await remote.flushThrough(connection);
        remote.needsFull = false;
      }
      // Writes that began before it was resyncing mark its dirty map when they end: loop until clean.
      // What it was sent is durable there before it counts as in sync: the writes it lacked may have
      // been flushed long ago, and a copy in sync may be promoted after a power cut.
      do {
        while (remote.dirty.blocks > 0) {
          // Nothing to copy past the end: the regions of activity logs are whole 4 MiB extents.
          remote.dirty.clearFrom(this.sizeBytes);
          if (remote.dirty.blocks === 0) break;
          const runs = [...remote.dirty.runs(RESYNC_RUN_BYTES)];
          for (let i = 0; i < runs.length; i += RESYNC_DEPTH) await this.pacer.step(() => this.copyRuns(remote, connection, runs.slice(i, i + RESYNC_DEPTH)));
        }
        // What it was sent is no longer unflushed once durable: else the next time it is out, its
        // delta would be all this resync copied.
        await remote.flushThrough(connection);
      } while (remote.dirty.blocks > 0);
      // A change that failed there meanwhile was acknowledged without it (it was no member yet).
      stillResyncing(remote);
      remote.member = true; // from the moment it is asked for: a failure from now on removes it again
      await this.inSync.add(replicaId);
      stillResyncing(remote);
      remote.state = 'in-sync';
      remote.dirty = new DirtyMap();
      // Forgotten once it is back in the set, not before: an add that fails, or a crash before it,
      // leaves its absence logged, and the next resync (by this primary or the next) is a delta,
      // not a full copy. A stale entry (a crash after the add, a forget that failed) only makes a
      // later resync copy more; an entry lost to a failure of the copy while the forget is on its
      // way (its new absence told first) costs a full copy.
      await this.forgetAbsence(remote).catch(() => undefined);
    } catch (err) {
      if ((remote.state as ReplicaState) === 'resyncing') await this.drop(remote, `resync failed: ${(err as Error).message}`);
      throw err;
    } finally {
      this.resyncs--;
    }
    return remote.copiedBytes - remote.copiedAtResyncStart;
  }

  /**
   * A read that fails its checksum here is served from an in-sync peer, and this copy rewritten with
   * it. One that fails otherwise (the disk) is served from an in-sync peer too, and the volume handed
   * over to the peers as after a failed change; the copy is not rewritten (its disk is failing).
   */
  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.pacer.clientRequest();
    if (!this.leaseHeld()) return this.holdReadLease().then(() => this.readHere(offsetBytes, lengthBytes));
    return this.readHere(offsetBytes, lengthBytes);
  }

  /** What the local copy has allocated: under the read lease, as reads are. */
  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    if (!this.leaseHeld()) return this.holdReadLease().then(() => this.below.blockStatus(offsetBytes, lengthBytes));
    return this.below.blockStatus(offsetBytes, lengthBytes);
  }

  private readHere(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.below.read(offsetBytes, lengthBytes).catch((err: unknown) => {
      if (err instanceof ChecksumError) return this.repair(offsetBytes, lengthBytes, err);
      return this.readFromPeer(offsetBytes, lengthBytes, err);
    });
  }

  /** Every copy that could be promoted (a member of the in-sync set) took a change sent within the read lease. */
  private leaseHeld(): boolean {
    const since = performance.now() - READ_LEASE_COUNTED_MS;
    for (const remote of this.remotes) if (remote.member && remote.vouchedFrom < since) return false;
    return true;
  }

  /**
   * Resolves once the read lease is held, renewed as often as it takes: a renewal counts from when
   * it was sent, so one that took longer than the lease (a copy's slow disk) leaves it run out, and
   * a read that joined it would otherwise be served on a lease a newer primary may have outlived.
   * Past READ_LEASE_WAIT_MS the read fails with ESHUTDOWN, not EIO: this node may no longer be the
   * primary (a promotion under way elsewhere), and its forwarders ask where the primary is and
   * send the read again, as for a write, within their retry window; EIO would be final for them.
   */
  private async holdReadLease(): Promise<void> {
    const deadline = performance.now() + READ_LEASE_WAIT_MS;
    const late = () => new IoError('ESHUTDOWN', `not served: the copies did not renew the primary's read lease within ${READ_LEASE_WAIT_MS} ms`);
    while (!this.leaseHeld()) {
      const left = deadline - performance.now();
      if (left <= 0) throw late();
      this.renewing ??= this.renew().finally(() => (this.renewing = undefined));
      // A renewal may wait long (a copy's removal while the store is out of reach): the read fails at
      // its deadline all the same, and the renewal goes on.
      await withDeadline(this.renewing, left, late);
    }
  }

  /** A flush to every member now, as a renewal of the read lease sends: one that cannot take it leaves the in-sync set. */
  async checkCopies(): Promise<void> {
    this.renewing ??= this.renew().finally(() => (this.renewing = undefined));
    await this.renewing;
  }

  /**
   * A flush to every member; one that cannot take it (or has no connection) leaves the in-sync set
   * first, so that it cannot be promoted. Fails if a copy refuses as fenced (a newer primary
   * exists) or a removal is refused.
   */
  private async renew(): Promise<void> {
    const sentAt = performance.now();
    await Promise.all(
      this.remotes.map(async (remote) => {
        if (!remote.member) return;
        const connection = remote.state === 'out' ? undefined : remote.connection;
        if (!connection) return this.removed(remote, 'it is out');
        try {
          await remote.flushThrough(connection);
          remote.vouchedFrom = Math.max(remote.vouchedFrom, sentAt);
        } catch (err) {
          if (isFenced(err)) throw err;
          await this.drop(remote, `it could not renew the primary's read lease: ${(err as Error).message}`);
        }
      }),
    );
  }

  /**
   * The first answer of an in-sync peer: it holds every acknowledged write, as this copy does. Only
   * a peer that answers makes the failure this copy's fault (a dead peer not yet taken out might
   * otherwise be handed the volume). Fails with err if none answers.
   */
  private async readFromPeer(offsetBytes: number, lengthBytes: number, err: unknown): Promise<Buffer> {
    if (!copyFault(err) || !this.onLocalFailure) throw err;
    const data = await this.fromInSyncPeer(offsetBytes, lengthBytes);
    if (!data) throw err;
    await this.handOver(err);
    return data;
  }

  /** The range as the first in-sync peer that answers has it; undefined if none does. */
  private async fromInSyncPeer(offsetBytes: number, lengthBytes: number): Promise<Buffer | undefined> {
    for (const peer of this.remotes) {
      if (peer.state !== 'in-sync' || !peer.connection) continue;
      const data = await peer.connection.read(offsetBytes, lengthBytes).catch(() => undefined);
      if (data) return data;
    }
    return undefined;
  }

  /**
   * Serves the range's blocks that fail their checksum here from an in-sync peer and rewrites them
   * here, block by block: each copy may have a damaged block of its own in the range. Changes of
   * the range are held off meanwhile (as a resync's copy does), so that a client write cannot land
   * between the read there and the write here. Whole blocks: a write of part of one would read the
   * damaged block first, and fail on it again. Fails with the checksum error if no peer has a block.
   * A block this copy's disk fails to read is served from a peer too, and the volume handed over
   * (readFromPeer); so it is if the rewrite fails (a full pool): the read is answered all the same.
   */
  private repair(offsetBytes: number, lengthBytes: number, cause: ChecksumError): Promise<Buffer> {
    const first = offsetBytes - (offsetBytes % BLOCK_BYTES);
    const end = Math.min(this.sizeBytes, Math.ceil((offsetBytes + lengthBytes) / BLOCK_BYTES) * BLOCK_BYTES);
    return this.exclusively(first, end - first, async (local) => {
      const data = await this.repairHeld(local, first, end, cause);
      return data.subarray(offsetBytes - first, offsetBytes - first + lengthBytes);
    });
  }

  /** repair()'s work on the whole blocks [first, end), with changes of them held off by the caller. */
  private async repairHeld(local: VolumeLayer, first: number, end: number, cause: ChecksumError): Promise<Buffer> {
    const data = Buffer.alloc(end - first);
    const rewrites: { at: number; block: Buffer }[] = [];
    let diskFault: unknown;
    for (let at = first; at < end; at += BLOCK_BYTES) {
      const length = Math.min(BLOCK_BYTES, end - at);
      const here = await local.read(at, length).catch((err: unknown) => {
        if (err instanceof ChecksumError) return undefined;
        if (!copyFault(err) || !this.onLocalFailure) throw err;
        diskFault ??= err;
        return undefined;
      });
      const block = here ?? (await this.fromInSyncPeer(at, length));
      if (!block) throw diskFault ?? cause;
      block.copy(data, at - first);
      if (!here) rewrites.push({ at, block });
    }
    diskFault ??= await this.rewrite(local, rewrites);
    // Not waited for here, with the range held.
    if (diskFault !== undefined) void this.handOver(diskFault);
    return data;
  }

  /** Writes the blocks here and makes them durable (one flush); resolves with the copy's fault if that failed. */
  private async rewrite(local: VolumeLayer, blocks: { at: number; block: Buffer }[]): Promise<unknown> {
    try {
      for (const { at, block } of blocks) await local.write(at, block, false);
      await local.flush();
      return undefined;
    } catch (err) {
      if (!copyFault(err)) throw err;
      return err;
    }
  }

  /**
   * Runs fn with changes of the range held off (as a resync's copy is), so that what it reads of
   * the copies there stays put and what it writes is not overtaken by a client's write. fn gets the
   * local copy and the remotes in sync with it at that moment.
   */
  async exclusively<T>(offsetBytes: number, lengthBytes: number, fn: (local: VolumeLayer, peers: InSyncPeer[]) => Promise<T>): Promise<T> {
    this.resyncs++;
    try {
      await this.inFlightEnded(); // changes that did not take the lock end first
      const release = await this.copyLock.acquire(offsetBytes, offsetBytes + lengthBytes, true);
      try {
        const peers = this.remotes.flatMap((r) => (r.state === 'in-sync' && r.connection ? [{ id: r.replica.id, connection: r.connection }] : []));
        return await fn(this.below, peers);
      } finally {
        release();
      }
    } finally {
      this.resyncs--;
    }
  }

  /** Closes the connections to the remotes. */
  close(): void {
    this.closed = true;
    for (const remote of this.remotes) remote.connection?.close();
  }

  /**
   * A resync stops at its next step once the device is closed (it would connect again, and copy on),
   * or once its copy is out (its dirty map then a new one, which must keep what was not flushed there).
   */
  private checkResyncing(remote: Remote, dirty = remote.dirty): void {
    if (this.closed) throw new IoError('ESHUTDOWN', `the replication of this volume has closed: the resync of replica ${remote.replica.id} stops`);
    if (remote.state !== 'resyncing' || remote.dirty !== dirty) throw new IoError('EIO', `replica ${remote.replica.id} failed during its resync`);
  }

  /**
   * One window of a full resync's scan from offsetBytes, client writes held off it: marks what the
   * local copy has allocated dirty, zeroes the rest on the remote. Resolves with where it stopped.
   */
  private async scan(remote: Remote, connection: ReplicaConnection, offsetBytes: number): Promise<number> {
    const end = Math.min(this.sizeBytes, offsetBytes + SCAN_WINDOW_BYTES);
    const release = await this.copyLock.acquire(offsetBytes, end, true);
    try {
      this.checkResyncing(remote);
      const zeroes: Promise<void>[] = [];
      let at = offsetBytes;
      for (const extent of await this.below.blockStatus(offsetBytes, end - offsetBytes)) {
        if (!extent.zero) remote.dirty.mark(at, extent.lengthBytes);
        else zeroes.push(connection.writeZeroes(at, extent.lengthBytes, false, !extent.hole));
        at += extent.lengthBytes;
      }
      await Promise.all(zeroes);
      return at;
    } finally {
      release();
    }
  }

  /** Copies runs at once; fails, once all have ended, if one failed. */
  private async copyRuns(remote: Remote, connection: ReplicaConnection, runs: DirtyRun[]): Promise<void> {
    const outcomes = await Promise.allSettled(runs.map((run) => this.copy(remote, connection, run.offsetBytes, run.lengthBytes)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async copy(remote: Remote, connection: ReplicaConnection, offsetBytes: number, lengthBytes: number): Promise<void> {
    const release = await this.copyLock.acquire(offsetBytes, offsetBytes + lengthBytes, true);
    try {
      this.checkResyncing(remote);
      const { dirty } = remote;
      const data = await this.below.read(offsetBytes, lengthBytes).catch((err: unknown) => this.readForResync(remote, offsetBytes, lengthBytes, err));
      // A range that reads as zeroes (trimmed or zeroed while the copy was away) is sent as zeroes:
      // no data crosses the network for it.
      if (isAllZero(data)) await this.sendZeroes(connection, offsetBytes, lengthBytes);
      else await connection.write(offsetBytes, data, false);
      // Out meanwhile (another request to it failed), its maps are new ones, which must keep the
      // range: it took the range but may lose it, as nothing flushed it there.
      this.checkResyncing(remote, dirty);
      // Cleared once there (no write to the range can come between, under the lock), so that
      // copied + behind, the resync's size, stays put meanwhile.
      remote.dirty.clear(offsetBytes, lengthBytes);
      remote.unflushed.mark(offsetBytes, lengthBytes);
      remote.copiedBytes += lengthBytes;
    } finally {
      release();
    }
  }

  /**
   * A range that reads as zeroes here, written as zeroes there the way this copy holds it: holes
   * where it has holes (the copy stays thin), allocated zeroes where it has them (space a client
   * reserved with WRITE_ZEROES and NO_HOLE, or by writing zeroes, stays reserved).
   */
  private async sendZeroes(connection: ReplicaConnection, offsetBytes: number, lengthBytes: number): Promise<void> {
    const zeroes: Promise<void>[] = [];
    const end = offsetBytes + lengthBytes;
    // Asked again from where the answer stopped: block status may describe less than was asked.
    for (let at = offsetBytes; at < end; ) {
      const from = at;
      for (const extent of await this.below.blockStatus(at, end - at)) {
        zeroes.push(connection.writeZeroes(at, extent.lengthBytes, false, !extent.hole));
        at += extent.lengthBytes;
      }
      if (at === from) {
        await Promise.allSettled(zeroes);
        throw new IoError('EIO', `block status of ${at}+${end - at} described nothing`);
      }
    }
    await Promise.all(zeroes);
  }

  /**
   * What a resync's copy sends when the local copy failed to read it (err). The fault is this
   * copy's, not the one being resynced: failing as the copy's would have it dropped, tried again,
   * and after --replica-timeout replaced, over and over. A range that fails its checksum is read
   * from an in-sync peer and rewritten here (the caller holds the copy lock on it, as a client read's
   * repair does). Else the resync fails with a LocalCopyFault, and a failing disk hands the volume
   * over to the peers (not awaited: the lock is held), whose resync then brings the copy back.
   */
  private async readForResync(remote: Remote, offsetBytes: number, lengthBytes: number, err: unknown): Promise<Buffer> {
    const range = `${offsetBytes}+${lengthBytes}`;
    const checksum = err instanceof ChecksumError;
    // Block by block, as a client read's repair: a peer may have a damaged block of its own in the run.
    if (checksum) {
      const end = Math.min(this.sizeBytes, offsetBytes + lengthBytes);
      const repaired = await this.repairHeld(this.below, offsetBytes, end, err).catch((failure: unknown) => {
        if (failure !== err && !copyFault(failure)) throw failure; // fenced, shut down: not this copy's fault
        return undefined;
      });
      if (repaired) return repaired;
    }
    const data = !checksum && copyFault(err) && this.onLocalFailure ? await this.fromInSyncPeer(offsetBytes, lengthBytes) : undefined;
    if (data) void this.handOver(err); // only a peer that answers makes it this copy's fault (readFromPeer)
    const what = checksum ? 'fails its checksum' : 'could not be read';
    const unrepaired = checksum ? '; no in-sync copy could give the data (a client write of the range repairs it)' : '';
    throw new LocalCopyFault(err instanceof IoError ? err.errno : 'EIO', `this node's own copy ${what} at ${range}, so replica ${remote.replica.id} was not resynced: ${(err as Error).message}${unrepaired}`);
  }

  /** Remotes that receive writes: in sync, or resyncing (all of them, usually: no copy then). */
  private targets(): Remote[] {
    return this.remotes.some((r) => r.state === 'out') ? this.remotes.filter((r) => r.state !== 'out') : this.remotes;
  }

  /** Sends a change to the local copy and every target; resolves once it may be acknowledged. */
  private replicate(offsetBytes: number, lengthBytes: number, local: () => Promise<void>, remote: (c: ReplicaConnection) => Promise<void>): Promise<void> {
    this.pacer.clientRequest();
    return this.tracked(this.replicateNow(offsetBytes, lengthBytes, local, remote));
  }

  /** done, in inFlight until it settles. */
  private tracked(done: Promise<void>): Promise<void> {
    const id = ++this.tracks;
    this.inFlight.start(id);
    const forget = () => this.inFlight.end(id);
    done.then(forget, forget);
    return done;
  }

  /** Resolves once the changes and flushes in flight now have ended (later ones are not waited for). */
  private inFlightEnded(): Promise<void> {
    return this.inFlight.endedUpTo(this.tracks);
  }

  private async replicateNow(offsetBytes: number, lengthBytes: number, local: () => Promise<void>, remote: (c: ReplicaConnection) => Promise<void>): Promise<void> {
    const paused = this.gate.enter();
    if (paused) await paused;
    let release: (() => void) | undefined;
    const seq = ++this.sent;
    const activity = this.remotes.length > 0 ? this.activity : undefined; // a lone copy cannot differ from others
    try {
      const logged = activity?.enter(offsetBytes, lengthBytes);
      if (activity && activity.extents > this.activityCap) this.settleActivityLog();
      // The log is on this node's disk: a save that fails is this copy's failure, not the request's.
      const saved = logged?.catch((err: unknown) => this.localFailed(this.remotes.some((r) => r.state === 'in-sync'), err));
      // The copies record the log's new extents meanwhile: both before the write is sent anywhere.
      const told = activity && this.activityNotices && !activity.namedAsOf(offsetBytes, lengthBytes, this.toldRevision) ? this.tellActivity(offsetBytes, lengthBytes) : undefined;
      if (saved || told) await Promise.all([saved, told]);
      if (this.resyncs > 0) release = await this.copyLock.acquire(offsetBytes, offsetBytes + lengthBytes, false);
      const targets = this.targets();
      const sentAt = targets.length > 0 ? performance.now() : 0;
      const sent = targets.map((r) => remote(r.connection as ReplicaConnection));
      const outcomes = await Promise.allSettled([sent.length > 0 ? afterThisTick(local) : local(), ...sent]);
      for (let i = 0; i < targets.length; i++) if (outcomes[i + 1].status === 'fulfilled' && seq > targets[i].outAfter) tookChange(targets[i], sentAt, offsetBytes, lengthBytes);
      // The usual case has nothing to settle: no call, one async step less per write.
      if (outcomes[0].status === 'rejected' || !this.allGotIt(targets, outcomes, seq)) await this.settle(targets, outcomes, offsetBytes, lengthBytes, seq);
    } finally {
      activity?.leave(offsetBytes, lengthBytes);
      release?.();
      this.gate.leave();
    }
  }


  /**
   * After a change went to the local copy (outcomes[0]) and the targets: the remotes that failed
   * are dropped, every remote that did not get it (or is out now) records the range, and the change
   * waits for the removal of those still in the in-sync set, and for the copies' absence logs to
   * have it unless they logged it themselves. It fails if the local copy failed or a removal could
   * not be committed or logged.
   */
  private async settle(targets: Remote[], outcomes: PromiseSettledResult<void>[], offsetBytes: number, lengthBytes: number, seq: number): Promise<void> {
    if (this.allGotIt(targets, outcomes, seq)) {
      if (outcomes[0].status === 'rejected') await this.localFailed(this.tookIt(targets, outcomes), outcomes[0].reason);
      return;
    }
    // Failures of its connection of now: one sent on a connection it had before it went out failed
    // with that connection's close, and takes out no resync under way since (the change is marked
    // dirty for it below, as a change it missed).
    const failures = new Map<Remote, unknown>();
    targets.forEach((r, i) => {
      const outcome = outcomes[i + 1];
      if (outcome.status !== 'rejected') return;
      if (isFenced(outcome.reason)) throw outcome.reason; // a newer primary exists
      if (seq > r.outAfter) failures.set(r, outcome.reason);
    });
    const removals: Promise<void>[] = [];
    const logs: Promise<void>[] = [];
    for (const remote of this.remotes) {
      if (failures.has(remote)) this.markOut(remote);
      // A target still: it took the change, or lacks nothing of it (a flush on its old connection).
      if (remote.state !== 'out' && targets.includes(remote) && (seq > remote.outAfter || lengthBytes === 0)) continue;
      remote.dirty.mark(offsetBytes, lengthBytes);
      const miss = ++remote.misses;
      if (seq <= remote.trackedAfter) logs.push(this.logged(remote, miss));
      const why = failures.has(remote) ? String(failures.get(remote)) : 'it is out and missed a write';
      if (remote.member) removals.push(this.removed(remote, why));
    }
    const [removed, logged] = await Promise.all([Promise.allSettled(removals), Promise.allSettled(logs)]);
    if (outcomes[0].status === 'rejected') await this.localFailed(this.tookIt(targets, outcomes), outcomes[0].reason);
    const refused = removed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (refused) {
      throw new IoError('EIO', `not acknowledged: a replica missed it and could not be removed from the in-sync set: ${(refused.reason as Error).message}`);
    }
    const unlogged = logged.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (unlogged) throw new IoError('EIO', `not acknowledged: a replica missed it and the copies could not log its absence: ${(unlogged.reason as Error).message}`);
  }

  /**
   * The local copy failed a request: fails with its error, after onLocalFailure has settled if a
   * remote in sync served it (then the fault is this copy's, not the request's).
   */
  private async localFailed(othersCould: boolean, err: unknown): Promise<never> {
    if (copyFault(err) && othersCould) await this.handOver(err);
    throw err;
  }

  /** Resolves once onLocalFailure has settled (at once without it). */
  private async handOver(err: unknown): Promise<void> {
    await this.onLocalFailure?.(`its own copy failed a request the others could serve: ${(err as Error).message}`).catch(() => undefined);
  }

  /** Whether a remote in sync took the change. */
  private tookIt(targets: Remote[], outcomes: PromiseSettledResult<void>[]): boolean {
    return targets.some((r, i) => r.state === 'in-sync' && outcomes[i + 1].status === 'fulfilled');
  }

  /** The usual case, with nothing to record: every remote was a target, got the change (seq), and still is, on the same connection. */
  private allGotIt(targets: Remote[], outcomes: PromiseSettledResult<void>[], seq: number): boolean {
    if (targets.length !== this.remotes.length) return false;
    for (let i = 0; i < targets.length; i++) if (outcomes[i + 1].status === 'rejected' || targets[i].state === 'out' || seq <= targets[i].outAfter) return false;
    return true;
  }

  /** Takes a failed remote out, then out of the in-sync set; resolves once that is committed. */
  private drop(remote: Remote, reason: string): Promise<void> {
    if (remote.state !== 'out') this.markOut(remote);
    return this.removed(remote, reason);
  }

  /** Resolves once the remote is not in the in-sync set; starts its removal if none is under way. */
  private removed(remote: Remote, reason: string): Promise<void> {
    if (!remote.member) return Promise.resolve();
    remote.removal ??= this.inSync.remove(remote.replica.id, reason).then(
      () => {
        remote.member = false;
        remote.removal = undefined;
      },
      (err: unknown) => {
        remote.removal = undefined; // the next write it misses tries again
        throw err;
      },
    );
    return remote.removal;
  }

  /** Resolves once the copies in step have logged the remote's misses up to miss (or logged them themselves). */
  private async logged(remote: Remote, miss: number): Promise<void> {
    if (!this.absences || remote.removed) return;
    while (remote.loggedMisses < miss) {
      remote.logging ??= this.logAbsence(remote).finally(() => (remote.logging = undefined));
      await remote.logging;
    }
  }

  /**
   * Tells the local log and every target's what the remote lacks so far; from then on they log what
   * it misses themselves. A target that cannot be told is dropped (it is failing).
   */
  private async logAbsence(remote: Remote): Promise<void> {
    const { log, notices } = this.absences as NonNullable<ReplicationOptions['absences']>;
    const upTo = remote.misses;
    const id = remote.replica.id;
    const absence = { full: remote.needsFull, map: remote.dirty.clone() };
    const tellTarget = (target: Remote) =>
      notices.track(target.replica.id, id, absence).catch((err: unknown) => this.drop(target, `its log could not be told of ${id}'s absence: ${(err as Error).message}`));
    await Promise.all([log.track(id, absence), ...this.targets().filter((r) => r !== remote).map(tellTarget)]);
    remote.loggedMisses = Math.max(remote.loggedMisses, upTo);
    if (remote.trackedAfter === Number.POSITIVE_INFINITY) remote.trackedAfter = this.sent;
  }

  /**
   * Tells a remote about to come back what each other remote away lacks, so that it logs for them
   * from its first change on: those out, and those being resynced (not in the set yet: should this
   * primary die before they are, the one promoted owes them what their logs say).
   */
  private async tellAbsences(to: Remote): Promise<void> {
    if (!this.absences) return;
    for (const r of this.remotes) {
      if (r === to || r.state === 'in-sync') continue;
      await this.absences.notices.track(to.replica.id, r.replica.id, { full: r.needsFull, map: mayLack(r) });
    }
  }

  /** The remote is back in step: the copies stop logging for it. One that cannot be told keeps a stale entry, which only makes a later resync copy more. */
  private async forgetAbsence(remote: Remote): Promise<void> {
    if (!this.absences) return;
    const { log, notices } = this.absences;
    const id = remote.replica.id;
    const others = this.targets().filter((r) => r !== remote);
    await Promise.all([log.forget(id), ...others.map((r) => notices.forget(r.replica.id, id).catch(() => undefined))]);
  }

  /** No more writes go to the remote; what it may lack (its unflushed writes too) becomes its dirty map. */
  private markOut(remote: Remote): void {
    remote.state = 'out';
    remote.outAfter = this.sent;
    remote.trackedAfter = Number.POSITIVE_INFINITY;
    remote.connection?.close();
    remote.connection = undefined;
    remote.dirty = mayLack(remote);
    remote.unflushed = new DirtyMap();
    remote.flushing.clear();
  }
}

/**
 * What the remote lacks, and what it took but may lose (not flushed there): a resyncing copy's
 * copied blocks, say, which the copy coming back with it may never be sent again.
 */
function mayLack(remote: Remote): DirtyMap {
  const map = remote.dirty.clone();
  map.merge(remote.unflushed);
  for (const flushing of remote.flushing) map.merge(flushing);
  return map;
}

/** Throws unless the remote is still being resynced (a change that failed there took it out). */
function stillResyncing(remote: Remote): void {
  if (remote.state !== 'resyncing') throw new IoError('EIO', `replica ${remote.replica.id} failed while it was being added back`);
}

/** A remote took a change sent at sentAt: a crash may lose it until a flush; it vouches for the read lease. */
function tookChange(remote: Remote, sentAt: number, offsetBytes: number, lengthBytes: number): void {
  remote.unflushed.mark(offsetBytes, lengthBytes);
  if (sentAt > remote.vouchedFrom) remote.vouchedFrom = sentAt;
}

/** The local copy failed a read while the copies were made equal to it (cause: its error). */
class OwnCopyFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(`its own copy failed: ${(cause as Error).message}`);
  }
}

/** A failure of the local copy that is its own (its disk): not a fence (EPERM), a shutdown or a refused request. */
function copyFault(err: unknown): boolean {
  return !(err instanceof IoError) || !['EPERM', 'ESHUTDOWN', 'EINVAL'].includes(err.errno);
}

/**
 * A resync failed because of this node's own copy (its disk, a block no peer could give, its writes in
 * flight that did not end), not the copy it resynced.
 */
export class LocalCopyFault extends IoError {
  override name = 'LocalCopyFault';
}

/** The replica refused the write because its epoch is newer than ours (epoch-fence.ts). */
export function isFenced(err: unknown): boolean {
  return err instanceof IoError && err.errno === 'EPERM';
}

/**
 * Runs fn once this tick's requests to the copies have left: the NBD client sends a tick's requests
 * in one writev when the tick ends, and a local write of a few KiB does its syscalls there and then.
 * Run at once, the local writes of a batch would hold back the copies' requests; deferred, the
 * copies work on them meanwhile.
 */
function afterThisTick(fn: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => process.nextTick(() => fn().then(resolve, reject)));
}
