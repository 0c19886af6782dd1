// A pool: every member of one service class, addressed as one range of physical blocks
// (member 0's blocks first, then member 1's, ...), with one allocator over that range.

import * as fs from 'fs';
import type { Logger } from 'pino';
import { IoError } from '../errors';
import { BLOCK_BYTES } from './block-size';
import { BlockAllocator } from './allocator';
import { slicePieces, totalBytes, type Pieces } from '../pieces';
import { fdatasync, inSpans, preadAll, preadAllSync, pwritevChunked, pwritevChunkedSync, RESOLVED, settleAll } from './file-io';
import { DATA_OFFSET_BYTES, MAX_POOL_BLOCKS, OpenMember } from './pool-member';

/**
 * Requests up to this size are done with synchronous pread/pwrite on the event-loop thread while the
 * member answers them from the page cache: that costs a few microseconds, several times less than
 * handing the call to libuv's thread pool and back (4k random I/O: about twice the IOPS). Larger
 * requests go to the pool, where the copy runs beside the event loop (1 MiB writes: about 10% faster
 * than inline), and so do small ones while the member is slow (InlineIo).
 */
const SYNC_IO_MAX_BYTES = 128 * 1024;

/**
 * An inline call slower than this did not just copy to or from the page cache (microseconds, even
 * for 128 KiB): the device answered it, or the kernel made a writer wait for writeback.
 */
const SLOW_CALL_MS = 1;
/**
 * This many slow inline calls, less 1/16 for each fast one, move a member's small reads (or writes)
 * to the thread pool: a CPU taken away now and then during a page-cache hit does not add up to it,
 * a device that misses one read in two does, within a few calls.
 */
const SLOW_CALLS_TO_LEAVE = 3;
const FAST_CALL_CREDIT = 1 / 16;
/**
 * At most MEMBER_MAX_CALLS of a member's calls hold a thread of libuv's pool (weftd runs 8), the
 * rest waiting their turn: a disk that stops answering holds up to that many calls before anyone can
 * tell, and must not take every thread from the node's other pools and its journal. A call is a
 * whole read, or up to a MiB of a write (its 16 KiB spans in one call, pwritevChunked), so the cap
 * costs large writes little.
 *
 * A member whose fdatasync has run STALLED_SYNC_MS, or whose calls on the thread pool have made no
 * progress for STALLED_CALLS_MS (a large write queued behind others on a busy disk may take
 * seconds), is stalled: its disk has stopped answering, or nearly (or is writing back much). None
 * of its I/O then runs on the event-loop thread, where a call into a hung disk would stop every
 * volume of the node, and at most STALLED_MAX_CALLS of its calls start from then on.
 */
const MEMBER_MAX_CALLS = 4;
/** The most one of a member's write calls covers (onThreadPool). */
const THREAD_CALL_MAX_BYTES = 1024 * 1024;
const STALLED_SYNC_MS = 1000;
const STALLED_CALLS_MS = 5000;
const STALLED_MAX_CALLS = 2;

/** How long they stay on the thread pool before a probe; doubles each time the member is still slow. */
const THREAD_POOL_FIRST_MS = 1000;
const THREAD_POOL_LONGEST_MS = 16_000;

/**
 * Where a member's small reads, or its small writes, run. Inline on the event-loop thread while they
 * are page-cache hits; on a slow device each inline call would stall every connection and the control
 * plane for the device's latency, so once several were slow they go to libuv's thread pool for a
 * while. Then one runs inline again as a probe, on probation: one more slow call sends them back.
 */
class InlineIo {
  private slowCalls = 0;
  /** While small requests go to the thread pool: performance.now() when the probe is due; else 0. */
  private probeAtMs = 0;
  private threadPoolMs = THREAD_POOL_FIRST_MS;

  /** Whether the next small request runs inline; if so, the caller reports how long it took. */
  runsInline(): boolean {
    if (this.probeAtMs === 0) return true;
    if (performance.now() < this.probeAtMs) return false;
    this.probeAtMs = 0;
    this.slowCalls = SLOW_CALLS_TO_LEAVE - 1;
    return true;
  }

  took(ms: number): void {
    if (ms <= SLOW_CALL_MS) {
      if (this.slowCalls === 0) return;
      this.slowCalls = Math.max(0, this.slowCalls - FAST_CALL_CREDIT);
      if (this.slowCalls === 0) this.threadPoolMs = THREAD_POOL_FIRST_MS; // fast again for a while
      return;
    }
    if (++this.slowCalls < SLOW_CALLS_TO_LEAVE) return;
    this.probeAtMs = performance.now() + this.threadPoolMs;
    this.threadPoolMs = Math.min(2 * this.threadPoolMs, THREAD_POOL_LONGEST_MS);
  }
}

/**
 * Runs call(fd, data, position) on the event-loop thread and tells io how long it took. A failure
 * rejects, not throws: the request's other I/O may already be running (settleAll).
 */
function inline<T>(io: InlineIo, call: (fd: number, data: T, position: number) => void, fd: number, data: T, position: number): Promise<void> {
  const startMs = performance.now();
  try {
    call(fd, data, position);
    return RESOLVED;
  } catch (err) {
    return Promise.reject(err);
  } finally {
    io.took(performance.now() - startMs);
  }
}

/**
 * A write on the event-loop thread, timed for the member's InlineIo: the error if it failed. The
 * member is dirty after it either way (a failed write may have written part of its data).
 */
function writeInline(member: PlacedMember, pieces: Pieces, position: number): unknown {
  const startMs = performance.now();
  try {
    pwritevChunkedSync(member.fd, pieces, position);
    return undefined;
  } catch (err) {
    return err;
  } finally {
    member.writes.took(performance.now() - startMs);
    member.dirty = true;
  }
}

/** Whether the member's next small read (io: its reads) or write (its writes) runs inline. */
function runsInline(member: PlacedMember, io: InlineIo): boolean {
  return !stalled(member) && io.runsInline();
}

function stalled(member: PlacedMember): boolean {
  if (member.syncSince === 0 && member.threadCalls === 0) return false; // the usual case: no clock read
  const now = performance.now();
  return (member.syncSince > 0 && now - member.syncSince > STALLED_SYNC_MS) || (member.threadCalls > 0 && now - member.progressAt > STALLED_CALLS_MS);
}

/** Runs call, one of the member's calls on libuv's thread pool, once its turn comes (MEMBER_MAX_CALLS, STALLED_MAX_CALLS), in order of arrival. */
function onThreads<T>(member: PlacedMember, call: () => Promise<T>): Promise<T> {
  if (member.waitingCalls.length === 0 && !atCap(member)) {
    member.threadCalls++;
    return runOnThreads(member, call);
  }
  return new Promise<T>((resolve, reject) => member.waitingCalls.push(() => runOnThreads(member, call).then(resolve, reject)));
}

function atCap(member: PlacedMember): boolean {
  return member.threadCalls >= MEMBER_MAX_CALLS || (member.threadCalls >= STALLED_MAX_CALLS && stalled(member));
}

/** Runs a call already counted in threadCalls; when it ends, hands the free places to the calls waiting. */
function runOnThreads<T>(member: PlacedMember, call: () => Promise<T>): Promise<T> {
  if (member.threadCalls === 1) member.progressAt = performance.now();
  const ended = () => {
    member.threadCalls--;
    member.progressAt = performance.now();
    while (member.waitingCalls.length > 0 && !atCap(member)) {
      member.threadCalls++;
      member.waitingCalls.shift()!();
    }
  };
  // A call that waited past the pool's close would reach whatever file has its descriptor number by now.
  const run = member.closed ? Promise.reject(new IoError('ESHUTDOWN', `pool member ${member.path} is closed`)) : call();
  run.then(ended, ended);
  return run;
}

/** A small write on its own: inline while the member answers from the page cache, else on the thread pool. */
function writeAt(member: PlacedMember, pieces: Pieces, position: number): Promise<void> {
  if (!runsInline(member, member.writes)) return onThreadPool(member, pieces, position);
  const failure = writeInline(member, pieces, position);
  return failure === undefined ? RESOLVED : Promise.reject(failure);
}

/**
 * A write on libuv's thread pool, in calls of up to THREAD_CALL_MAX_BYTES: one whose call has
 * not ended for STALLED_CALLS_MS marks its member stalled, which a 32 MiB write to a slow disk
 * should not. The member is dirty once it is done: a sync that ran while it was in flight did not cover it.
 */
function onThreadPool(member: PlacedMember, pieces: Pieces, position: number): Promise<void> {
  const total = totalBytes(pieces);
  const written =
    total <= THREAD_CALL_MAX_BYTES
      ? onThreads(member, () => pwritevChunked(member.fd, pieces, position))
      : settleAll(inSpans(pieces, position, THREAD_CALL_MAX_BYTES, (part, at) => onThreads(member, () => pwritevChunked(member.fd, part, at))));
  return written.finally(() => (member.dirty = true));
}

/**
 * Settles a run of gathered writes written in one call. A call that failed may have written some of
 * the run: each write is then tried again alone, so that one that reaches the file is not failed for
 * another's error (after a failed in-place write, the old checksum would be journalled over its new data).
 */
function settleRun(member: PlacedMember, run: readonly GatheredWrite[], first: number, end: number, failure: unknown): void {
  if (failure === undefined) for (let i = first; i < end; i++) run[i].resolve();
  else if (end - first === 1) run[first].reject(failure);
  else for (let i = first; i < end; i++) writeAt(member, run[i].pieces, run[i].position).then(run[i].resolve, run[i].reject);
}

interface PlacedMember extends OpenMember {
  firstBlock: number;
  dirty: boolean;
  /** The member's latest fdatasync, while it runs or waits for the one before it. */
  syncing?: Promise<void>;
  /** That one, while it waits (syncMember). */
  queuedSync?: Promise<void>;
  /** performance.now() when the fdatasync running began; 0 while none runs. */
  syncSince: number;
  /** Its calls running on the thread pool, when one of them last ended (or the first began), and those waiting their turn (onThreads). */
  threadCalls: number;
  progressAt: number;
  /** Each starts its call, counted in threadCalls already. */
  waitingCalls: (() => void)[];
  /** Set by Pool.close: its descriptor is closed. */
  closed?: boolean;
  reads: InlineIo;
  writes: InlineIo;
}

/** For a promise whose end is waited for, not its outcome. */
const ignoreOutcome = (): void => undefined;

/** A small write waiting to be written with the others of its turn, at its end (Pool.gather). */
interface GatheredWrite {
  member: PlacedMember;
  position: number;
  pieces: Pieces;
  bytes: number;
  resolve(): void;
  reject(err: unknown): void;
}

export class Pool {
  readonly allocator: BlockAllocator;
  private readonly members: PlacedMember[] = [];
  /** Set once a member's file is found deleted or replaced; every later write and sync fails with it. */
  private lost: IoError | undefined;
  private closed = false;
  /** Small writes of this turn, written at its end (gather). */
  private gathered: GatheredWrite[] = [];

  constructor(readonly poolClass: string, members: OpenMember[], private readonly logger: Logger) {
    let firstBlock = 0;
    for (const m of members) {
      // Dirty from the start: after a crash, a member may hold writes of the previous process that
      // reached only the page cache, and recovery keeps them (their checksums match).
      this.members.push({ ...m, firstBlock, dirty: true, reads: new InlineIo(), writes: new InlineIo(), syncSince: 0, threadCalls: 0, progressAt: 0, waitingCalls: [] });
      firstBlock += m.superblock.blocks;
    }
    if (firstBlock > MAX_POOL_BLOCKS) logger.warn({ pool: poolClass, blocks: firstBlock, usable: MAX_POOL_BLOCKS }, 'the pool is larger than its block maps can address: the blocks past 16 TiB stay unused');
    this.allocator = new BlockAllocator(Math.min(firstBlock, MAX_POOL_BLOCKS));
  }

  /** Why the pool refuses writes and flushes until weftd restarts, if it does. */
  get lostError(): IoError | undefined {
    return this.lost;
  }

  /** Whether a member's disk has stopped answering, or nearly (STALLED_SYNC_MS, STALLED_CALLS_MS). */
  get stalled(): boolean {
    return this.members.some(stalled);
  }

  get totalBlocks(): number {
    return this.allocator.totalBlocks;
  }

  memberList(): { path: string; uuid: string; blocks: number }[] {
    return this.members.map((m) => ({ path: m.path, uuid: m.superblock.uuid, blocks: m.superblock.blocks }));
  }

  /** Writes whole blocks, each to its own physical block (targets[i]): one write per contiguous run. */
  writeBlocks(targets: readonly number[], blocks: Pieces): Promise<void> {
    const writes: Promise<void>[] = [];
    let start = 0;
    for (let i = 1; i <= targets.length; i++) {
      if (i < targets.length && targets[i] === targets[i - 1] + 1) continue;
      writes.push(this.write(targets[start], slicePieces(blocks, start * BLOCK_BYTES, i * BLOCK_BYTES)));
      start = i;
    }
    return writes.length === 1 ? writes[0] : settleAll(writes);
  }

  /** Reads count blocks starting at physical block start into buf (count * 4096 bytes). */
  read(start: number, buf: Buffer): Promise<void> {
    return this.eachSegment(start, buf.length, (m, position, fromBytes, toBytes) => {
      const part = toBytes - fromBytes === buf.length ? buf : buf.subarray(fromBytes, toBytes);
      if (part.length > SYNC_IO_MAX_BYTES || !runsInline(m, m.reads)) return onThreads(m, () => preadAll(m.fd, part, position));
      return inline(m.reads, preadAllSync, m.fd, part, position);
    });
  }

  /** Writes the pieces (whole blocks in all, not each) at physical block start. */
  write(start: number, pieces: Pieces): Promise<void> {
    if (this.lost) return Promise.reject(this.lost);
    return this.eachSegment(start, totalBytes(pieces), (m, position, fromBytes, toBytes) => {
      const part = slicePieces(pieces, fromBytes, toBytes);
      return toBytes - fromBytes > SYNC_IO_MAX_BYTES ? onThreadPool(m, part, position) : this.gather(m, position, part);
    });
  }

  /**
   * A small write, done at the end of the turn together with the others of the turn: the requests
   * that arrive in one socket read reach the pool in one go, and blocks allocated one after another
   * are next to each other in the file, so that writes that follow one another there go out in one
   * call (in WRITE_CHUNK_BYTES spans). A system call costs more here than copying 4 KiB (a third of
   * a copy's CPU per 4 KiB write was its pool writes; test/bench/README.md).
   */
  private gather(member: PlacedMember, position: number, pieces: Pieces): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.gathered.length === 0) queueMicrotask(this.writeGathered);
      this.gathered.push({ member, position, pieces, bytes: totalBytes(pieces), resolve, reject });
    });
  }

  /**
   * Writes the turn's gathered writes: those that follow one another in a member's file (up to
   * SYNC_IO_MAX_BYTES) in one call. Where a call runs is asked per call, each inline one timed
   * before the next is asked, so that a slow member's probe is one call, not a turn's worth.
   */
  private readonly writeGathered = (): void => {
    const writes = this.gathered;
    this.gathered = [];
    for (let first = 0, end = 1; first < writes.length; first = end++) {
      const { member, position } = writes[first];
      let bytes = writes[first].bytes;
      while (end < writes.length && writes[end].member === member && writes[end].position === position + bytes && bytes + writes[end].bytes <= SYNC_IO_MAX_BYTES) {
        bytes += writes[end++].bytes;
      }
      const pieces = end - first === 1 ? writes[first].pieces : writes.slice(first, end).flatMap((w) => w.pieces);
      if (runsInline(member, member.writes)) {
        settleRun(member, writes, first, end, writeInline(member, pieces, position));
      } else {
        const [from, to] = [first, end];
        onThreadPool(member, pieces, position).then(
          () => settleRun(member, writes, from, to, undefined),
          (err: unknown) => settleRun(member, writes, from, to, err),
        );
      }
    }
  };

  /**
   * Makes every completed write durable; fails while a member's file is not the one weftd opened.
   * A member with nothing written since its last sync began still waits for that sync to end: it is
   * what makes the writes before it durable (callers sync concurrently: flushes, control operations,
   * checkpoints).
   */
  async sync(): Promise<void> {
    this.checkMembersInPlace();
    await settleAll(this.members.map((m) => (m.dirty ? this.syncMember(m) : (m.syncing ?? RESOLVED))));
    // A member's sync that failed while this one waited for it (or ran on another member) lost writes this one covers.
    if (this.lost) throw this.lost;
  }

  /**
   * One fdatasync at a time per member, each after the one before it has ended: Linux reports a
   * writeback error to one of the calls that check for it, so a second call running beside a failed
   * one would succeed without the pages the first lost, and a FLUSH be acknowledged for them.
   */
  private syncMember(m: PlacedMember): Promise<void> {
    m.dirty = false;
    // One not started yet covers every write completed before it starts: join it. Else, behind a
    // disk slow to sync, every flush would queue one more fdatasync, one after another.
    if (m.queuedSync) return m.queuedSync;
    const run: Promise<void> = (m.syncing ?? RESOLVED).then(ignoreOutcome, ignoreOutcome).then(() => {
      if (m.queuedSync === run) m.queuedSync = undefined;
      if (this.lost) throw this.lost;
      // Queued behind a sync that close did not wait for (a slow pool's): its descriptor is closed,
      // and its number may be another file's by now.
      if (this.closed) throw new IoError('ESHUTDOWN', `pool ${this.poolClass} is closed`);
      m.syncSince = performance.now();
      return fdatasync(m.fd).finally(() => (m.syncSince = 0)).catch((err: Error) => {
        // After a failed fdatasync the kernel may have dropped the unwritten pages and marked them
        // clean, so a later one would succeed without them: fail-stop until a restart, whose
        // recovery checks every write not known durable against its checksum.
        throw this.markLost(m, `could not be synced (${err.message})`, 'Restart weftd once the disk works');
      });
    });
    m.syncing = run;
    m.queuedSync = run;
    const done = () => {
      if (m.syncing === run) m.syncing = undefined;
    };
    run.then(done, done);
    return run;
  }

  close(): void {
    this.closed = true;
    for (const m of this.members) {
      m.closed = true;
      fs.closeSync(m.fd);
    }
    this.members.length = 0;
  }

  /**
   * A member file deleted or replaced while weftd runs takes every write from then on with it: the
   * data would be gone at the next start. Checked on every sync, so that no FLUSH or FUA write is
   * acknowledged for it (fstat and stat per member: about 20 us here, little beside an fdatasync).
   */
  private checkMembersInPlace(): void {
    if (this.lost) throw this.lost;
    for (const m of this.members) {
      // Its stat could wait on the hung disk, on the event loop; its next sync after the stall checks it.
      if (stalled(m)) continue;
      const problem = misplaced(m);
      if (problem) throw this.markLost(m, `${problem} while weftd ran`, 'Stop weftd and restore the file');
    }
  }

  /** From now on the pool refuses writes and flushes: what they wrote might not be there at the next start. */
  private markLost(m: PlacedMember, problem: string, remedy: string): IoError {
    this.lost ??= new IoError(
      'EIO',
      `pool ${this.poolClass}: member ${m.path} ${problem}; its volumes refuse writes and flushes from now on, ` +
        `as what they wrote might be lost at the next start (the node's other pools go on, and so do control operations ` +
        `that need none of its data). ${remedy}`,
    );
    this.logger.error({ pool: this.poolClass, member: m.path }, this.lost.message);
    return this.lost;
  }

  /**
   * Splits a run of physical blocks at member boundaries (a run rarely crosses one): io gets each
   * member's part as the byte range [fromBytes, toBytes) of the run's data.
   */
  private eachSegment(
    start: number,
    bytes: number,
    io: (member: PlacedMember, position: number, fromBytes: number, toBytes: number) => Promise<void>,
    fromBytes = 0,
  ): Promise<void> {
    const count = (bytes - fromBytes) / BLOCK_BYTES;
    const member = this.memberOf(start);
    const inMember = member.firstBlock + member.superblock.blocks - start;
    const position = DATA_OFFSET_BYTES + (start - member.firstBlock) * BLOCK_BYTES;
    if (count <= inMember) return io(member, position, fromBytes, bytes);
    const split = fromBytes + inMember * BLOCK_BYTES;
    return settleAll([io(member, position, fromBytes, split), this.eachSegment(start + inMember, bytes, io, split)]);
  }

  private memberOf(block: number): PlacedMember {
    const members = this.members;
    for (let i = members.length - 1; i >= 0; i--) if (block >= members[i].firstBlock) return members[i];
    throw new Error(`physical block ${block} outside pool ${this.poolClass}`);
  }
}

/** What happened to a member's file since it was opened, if anything. */
function misplaced(member: OpenMember): string | undefined {
  const open = fs.fstatSync(member.fd);
  if (open.nlink === 0) return 'was deleted';
  // Cut short (truncate, a restore of a shorter copy): reads past its end give zeroes, writes there
  // make the file again, and what was cut off is gone, written or not.
  const holds = DATA_OFFSET_BYTES + member.superblock.blocks * BLOCK_BYTES;
  if (open.isFile() && open.size < holds) return `was cut short to ${open.size} bytes (it holds ${holds})`;
  let now: fs.Stats;
  try {
    now = fs.statSync(member.path);
  } catch (err) {
    return `was moved or deleted (${(err as NodeJS.ErrnoException).code})`;
  }
  return now.dev === open.dev && now.ino === open.ino ? undefined : 'was replaced by another file';
}
