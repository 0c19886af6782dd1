// The primary's activity log: where the copies of a volume may differ from one another if this
// primary died now. A write goes to every copy at once, so until it has ended everywhere, and until
// a flush has made it durable everywhere, a crash can leave it on some copies and not others. The
// log names those regions, in extents of 4 MiB, on the primary's disk before a write is sent.
//
// After a crash it bounds the repair: a restarted primary copies its logged extents to the copies
// in step before it serves, and a new primary resyncs the old one with what it missed plus the
// extents the old one logged, instead of a full copy. An extent leaves the log once a flush that
// began after its last write has completed on every copy.
//
// Hot extents stay. A workload that flushes after every write, a database's commits, would
// otherwise wait at each write for a save of the log and for every copy's record of it, as its
// extent left at the last flush. So an extent written again soon after it left (among the last
// RECENTLY_LEFT to leave) is hot: flushes no longer take it out, up to HOT_EXTENTS of them, the
// least recently written leaving first. What a crash of the primary has copied grows by those
// (64 MiB at most); an extent written once and flushed, a bulk write's, leaves as before.

import { RecordFile } from '../store/record-file';
import { DirtyMap } from './dirty-map';
import { SerialSave } from './serial-save';

const EXTENT_BYTES = 4 * 1024 * 1024;
/** How many hot extents stay in the log after flushes that cover them (64 MiB). */
export const HOT_EXTENTS = 16;
/** How many of the extents that left last a write brings back as hot. */
const RECENTLY_LEFT = 64;

interface LogFile {
  /** The epoch of the primary that wrote it. */
  epoch: number;
  extents: number[];
}

/** Where the write stream was when a flush began, handed back when it ends. */
export interface FlushToken {
  /** The clock of the last write that had begun. */
  readonly clock: number;
  /** The extents with writes in flight: the flush does not cover those. */
  readonly busy: ReadonlySet<number>;
}

export class ActivityLog {
  /** The extents the log holds (or will, once the save under way ends), each with the revision that added it. */
  private readonly logged = new Map<number, number>();
  /** The extents it holds, each with the clock of its last write (0: before this process). */
  private readonly lastWrite = new Map<number, number>();
  /** Counts the writes that entered. */
  private clock = 0;
  private leftCount = 0;
  /** The logged extents that flushes do not take out. */
  private readonly hot = new Set<number>();
  /** The extents that left last, oldest first (at most RECENTLY_LEFT). */
  private readonly recentlyLeft = new Set<number>();
  /** The extents the file on disk holds. */
  private saved = new Set<number>();
  /** The extents of the save being written, if one is: once it ends, the file holds these. */
  private writing: Set<number> | undefined;
  /**
   * Writes in flight, per extent. An extent's count stays at 0 until the next flush starts: a Map
   * that fills and empties with every write is rebuilt every few dozen writes (perf: about 0.2 us
   * of each replicated 4 KiB write); the extents written between two flushes are few.
   */
  private readonly inFlight = new Map<number, number>();
  /** Counts the changes to the extents it holds: what a copy told of them last holds them as of this. */
  private revisionValue = 0;
  private readonly saver = new SerialSave(() => this.write());

  private constructor(private readonly recordFile: RecordFile, private epochValue: number, private readonly hotExtents: number) {}

  /**
   * The log in file; a missing or damaged one is empty at epoch 0 (a copy whose old primary's log is
   * lost gets a full copy). hotExtents: how many hot extents stay after flushes (HOT_EXTENTS).
   */
  static load(file: string, hotExtents = HOT_EXTENTS): ActivityLog {
    const { record, value } = RecordFile.open(file, hasExtents);
    const saved = value as Partial<LogFile> | undefined;
    if (!saved || !Number.isSafeInteger(saved.epoch) || !areExtents(saved.extents)) return new ActivityLog(record, 0, hotExtents);
    const log = new ActivityLog(record, saved.epoch as number, hotExtents);
    for (const extent of saved.extents) {
      log.logged.set(extent, 0);
      log.lastWrite.set(extent, 0);
    }
    log.saved = new Set(log.logged.keys());
    return log;
  }

  /** Where it is kept. */
  get file(): string {
    return this.recordFile.file;
  }

  /** The epoch of the primary that wrote it. */
  get epoch(): number {
    return this.epochValue;
  }

  /** How many extents it names. */
  get extents(): number {
    return this.logged.size;
  }

  get revision(): number {
    return this.revisionValue;
  }

  /** How many extents have left it after flushes, so far. */
  get left(): number {
    return this.leftCount;
  }

  /** The extents it names (for the copies' record of it, peer-activity.ts). */
  list(): number[] {
    return [...this.logged.keys()];
  }

  /** Whether every extent of the range is in it, and was (last) added at or before revision. */
  namedAsOf(offsetBytes: number, lengthBytes: number, revision: number): boolean {
    for (let extent = firstExtent(offsetBytes), last = lastExtent(offsetBytes, lengthBytes); extent <= last; extent++) {
      if ((this.logged.get(extent) ?? Number.POSITIVE_INFINITY) > revision) return false;
    }
    return true;
  }

  /** The regions it names, as a map of blocks. */
  regions(): DirtyMap {
    return extentRegions(this.logged.keys());
  }

  /** A primary at epoch starts afresh, its copies made equal where the log named: empty, on disk before it resolves. */
  reset(epoch: number): Promise<void> {
    this.epochValue = epoch;
    this.logged.clear();
    this.lastWrite.clear();
    this.hot.clear();
    this.recentlyLeft.clear();
    this.revisionValue++;
    return this.saver.save();
  }

  /** A write of the range is about to be sent: resolves once its extents are on disk (undefined if they are already). */
  enter(offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    let unsaved = false;
    const clock = ++this.clock;
    for (let extent = firstExtent(offsetBytes), last = lastExtent(offsetBytes, lengthBytes); extent <= last; extent++) {
      this.inFlight.set(extent, (this.inFlight.get(extent) ?? 0) + 1);
      this.lastWrite.set(extent, clock);
      if (!this.logged.has(extent)) this.add(extent);
      unsaved ||= !this.saved.has(extent) || (this.writing !== undefined && !this.writing.has(extent));
    }
    return unsaved ? this.saver.save() : undefined;
  }

  /** The write has ended on every copy (or failed). */
  leave(offsetBytes: number, lengthBytes: number): void {
    for (let extent = firstExtent(offsetBytes), last = lastExtent(offsetBytes, lengthBytes); extent <= last; extent++) {
      this.inFlight.set(extent, (this.inFlight.get(extent) ?? 1) - 1);
    }
  }

  /** A flush of every copy begins; pass what this returns to flushed() once it has completed everywhere. */
  flushStarted(): FlushToken {
    // A write still in flight may end after the flush was sent: the flush does not cover it.
    const busy = new Set<number>();
    for (const [extent, count] of this.inFlight) {
      if (count > 0) busy.add(extent);
      else this.inFlight.delete(extent); // deleting the entry being visited is safe in a Map
    }
    return { clock: this.clock, busy };
  }

  /**
   * The flush completed on every copy. The extents whose writes had all ended before it began leave
   * the log, but for the hotExtents most recently written hot ones among them (saved lazily: a log
   * larger than need be only costs copying).
   */
  flushed(token: FlushToken): void {
    const coveredHot: { extent: number; clock: number }[] = [];
    const leftBefore = this.leftCount;
    for (const [extent, clock] of this.lastWrite) {
      if (clock > token.clock || token.busy.has(extent)) continue;
      if (this.hot.has(extent)) coveredHot.push({ extent, clock });
      else this.drop(extent); // deleting the entry being visited is safe in a Map
    }
    if (coveredHot.length > this.hotExtents) {
      coveredHot.sort((a, b) => a.clock - b.clock); // the least recently written first
      for (const { extent } of coveredHot.slice(0, coveredHot.length - this.hotExtents)) this.drop(extent);
    }
    if (this.leftCount > leftBefore) void this.saver.save().catch(() => undefined);
  }

  private add(extent: number): void {
    this.logged.set(extent, ++this.revisionValue);
    // Written again soon after it left: it will be again.
    if (this.recentlyLeft.delete(extent) && this.hotExtents > 0) this.hot.add(extent);
  }

  private drop(extent: number): void {
    this.logged.delete(extent);
    this.lastWrite.delete(extent);
    this.hot.delete(extent);
    this.revisionValue++;
    this.leftCount++;
    this.recentlyLeft.delete(extent);
    this.recentlyLeft.add(extent);
    if (this.recentlyLeft.size > RECENTLY_LEFT) this.recentlyLeft.delete(this.recentlyLeft.values().next().value as number);
  }

  /** The volume is gone. */
  async remove(): Promise<void> {
    await this.saver.idle();
    this.recordFile.remove();
  }

  private async write(): Promise<void> {
    const extents = [...this.logged.keys()];
    const writing = new Set(extents);
    this.writing = writing;
    try {
      await this.recordFile.save({ epoch: this.epochValue, extents } satisfies LogFile);
      this.saved = writing;
    } catch (err) {
      // The write may have landed and only its sync failed: the file reads as either record now
      // (after a restart too). Only what both name is surely on disk; an extent that only the old one
      // named must be saved again before a write to it is sent.
      this.saved = new Set([...this.saved].filter((extent) => writing.has(extent)));
      throw err;
    } finally {
      this.writing = undefined;
    }
  }
}

/** The extents' regions, as a map of blocks. */
export function extentRegions(extents: Iterable<number>): DirtyMap {
  const map = new DirtyMap();
  for (const extent of extents) map.mark(extent * EXTENT_BYTES, EXTENT_BYTES);
  return map;
}

/** Whether a record's value has extents: what the JSON files of earlier versions of these logs held. */
export const hasExtents = (value: unknown): boolean => typeof value === 'object' && value !== null && areExtents((value as { extents?: unknown }).extents);

/** Whether a value read from a file is a list of extents. */
export function areExtents(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((e) => Number.isSafeInteger(e) && e >= 0);
}

// Plain loops over these rather than a generator: enter() and leave() run for every replicated write.
function firstExtent(offsetBytes: number): number {
  return Math.floor(offsetBytes / EXTENT_BYTES);
}

function lastExtent(offsetBytes: number, lengthBytes: number): number {
  return Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / EXTENT_BYTES);
}
