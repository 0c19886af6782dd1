// The local replica, the bottom of a volume's stack: reads fall through its chain of layers (head,
// then snapshots, each in its own pool); writes go to the head's pool, to newly allocated blocks.
// Every block's CRC-32C is checked on read; a mismatch is an I/O error, never wrong data. Its own
// quiesce lets a control operation pause this volume's I/O without touching any other volume.

import { takeBuffer } from '../buffers';
import { ChecksumError, IoError } from '../errors';
import { copyPieces, piecesOf, totalBytes, type Pieces } from '../pieces';
import type { BlockRun } from '../store/allocator';
import type { Pool } from '../store/pool';
import { crc32c, crc32cBlocks, crc32cPieces } from '../store/checksum';
import { STATUS_MAX_EXTENTS, type Extent, type VolumeLayer, type WriteZeroesOptions } from './block-device';
import { ABSENT, FIRST_PHYSICAL, ZERO } from './block-map';
import type { Chain } from './chain';
import type { Metadata } from './metadata';
import { Quiesce } from './quiesce';
import { RangeLock, Release } from './range-lock';
import { BLOCK_BYTES } from './types';

const B = BLOCK_BYTES;
/** Large trims and zero-writes are done in pieces of this many blocks. */
const ZERO_CHUNK_BLOCKS = 256;
/** BLOCK_STATUS looks at most this many blocks per request. */
const STATUS_MAX_BLOCKS = 128 * 1024;
/** What a block of zeroes (a hole) checksums to. */
const ZERO_BLOCK_CRC = crc32c(Buffer.alloc(B));

/** What a replica needs from the node it lives on. */
export interface ReplicaHost {
  readonly metadata: Metadata;
  /** Set once the node shuts down: I/O then fails with ESHUTDOWN. */
  readonly closed: boolean;
  /** Marks journal sequence seq as belonging to a write whose data is still in flight, to poolClass. */
  writeStarted(seq: number, poolClass: string): void;
  writeFinished(seq: number, poolClass: string): void;
  /** The map changed with no data written (a trim): a background sync makes it durable in time. */
  mapChanged(): void;
  /**
   * Makes every completed write durable (and lets deferred frees become free space); fails if
   * poolClass's writes could not be (another pool's failure does not fail it).
   */
  flush(poolClass: string): Promise<void>;
  checksumError(volume: string, offsetBytes: number): void;
  /** A scrub could not read the block at offsetBytes: the disk failed the read (EIO). */
  readFailed(volume: string, offsetBytes: number, err: Error): void;
}

/** The node's side of a volume's control operations: the engine's catalog transactions. */
export interface ReplicaControl {
  snapshot(name: string): Promise<void>;
  resize(sizeBytes: number): Promise<void>;
  revert(snapshot: string): Promise<void>;
}

export class LocalReplica implements VolumeLayer {
  readonly lock = new RangeLock();
  readonly quiesce = new Quiesce();
  /** Blocks that failed their checksum on read or scrub since weftd started. */
  checksumErrors = 0;

  /** chain: replaced by the engine (with I/O paused) when a control operation changes the layers. */
  constructor(
    readonly name: string,
    private readonly host: ReplicaHost,
    public chain: Chain,
    private readonly size: () => number,
    readonly readOnly: boolean,
    private readonly control: ReplicaControl,
  ) {}

  // Control operations reach the bottom of the stack here and go to the node's catalog.
  snapshot(name: string): Promise<void> {
    return this.control.snapshot(name);
  }

  resize(sizeBytes: number): Promise<void> {
    return this.control.resize(sizeBytes);
  }

  revert(snapshot: string): Promise<void> {
    return this.control.revert(snapshot);
  }

  get sizeBytes(): number {
    return this.size();
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    const first = Math.floor(offsetBytes / B);
    const end = Math.ceil((offsetBytes + lengthBytes) / B);
    const entered = this.begin(first, end, false);
    const release = typeof entered === 'function' ? entered : await entered;
    try {
      if (release !== entered) this.checkRange(offsetBytes, lengthBytes); // again: see write()
      const buf = await this.readBlocks(first, end);
      const skip = offsetBytes - first * B;
      return skip === 0 && lengthBytes === buf.length ? buf : buf.subarray(skip, skip + lengthBytes);
    } finally {
      this.end(release);
    }
  }

  async write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    const pieces = piecesOf(data);
    const lengthBytes = totalBytes(pieces);
    this.checkWritable(offsetBytes, lengthBytes);
    if (lengthBytes === 0) return;
    const first = Math.floor(offsetBytes / B);
    const end = Math.ceil((offsetBytes + lengthBytes) / B);
    // No await where nothing waits (the common case): each costs a turn of the microtask queue.
    const entered = this.begin(first, end, true);
    const release = typeof entered === 'function' ? entered : await entered;
    try {
      // It waited at the gate, where a control operation (a resize, a revert) may have moved the end.
      if (release !== entered) this.checkWritable(offsetBytes, lengthBytes);
      const aligned = offsetBytes === first * B && lengthBytes === (end - first) * B;
      await this.writeBlocks(first, aligned ? pieces : await this.fullBlocks(offsetBytes, pieces, lengthBytes, first, end));
    } finally {
      this.end(release);
    }
    if (fua) await this.host.flush(this.chain.head.pool.poolClass);
  }

  flush(): Promise<void> {
    return this.host.flush(this.chain.head.pool.poolClass);
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.zeroRange(offsetBytes, lengthBytes, fua, false);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.zeroRange(offsetBytes, lengthBytes, options.fua, options.noHole);
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkRange(offsetBytes, lengthBytes);
    const extents: Extent[] = [];
    // Answering for part of a long range is allowed; it bounds the work of one request.
    const endBytes = Math.min(offsetBytes + lengthBytes, (Math.floor(offsetBytes / B) + STATUS_MAX_BLOCKS) * B);
    let pos = offsetBytes;
    while (pos < endBytes) {
      const block = Math.floor(pos / B);
      const data = this.resolve(block) >= FIRST_PHYSICAL;
      const runEnd = Math.min(endBytes, (block + 1) * B);
      const last = extents[extents.length - 1];
      if (last && last.hole === !data) last.lengthBytes += runEnd - pos;
      else if (extents.length === STATUS_MAX_EXTENTS) break;
      else extents.push({ lengthBytes: runEnd - pos, hole: !data, zero: !data });
      pos = runEnd;
    }
    return extents;
  }

  /**
   * Reads every mapped block in [first, end) and returns the offsets of those whose data does not
   * match its checksum, or that the disk fails to read (EIO): each is reported, and the scrub goes
   * on. Used by `weft volume verify`.
   */
  async scrub(first: number, end: number): Promise<number[]> {
    const release = await this.begin(first, end, false);
    try {
      const bad: number[] = [];
      const one = Buffer.allocUnsafe(B);
      for (let block = first; block < end; block++) {
        const layer = this.chain.layerOf(block);
        const value = layer ? layer.map.value(block) : ABSENT;
        if (!layer || value < FIRST_PHYSICAL) continue;
        const unreadable = await readError(layer.pool, value - FIRST_PHYSICAL, one);
        if (unreadable) {
          bad.push(block * B);
          this.host.readFailed(this.name, block * B, unreadable);
        } else if (crc32c(one) !== layer.map.crc(block)) {
          bad.push(block * B);
          this.checksumFailed(block * B);
        }
      }
      return bad;
    } finally {
      this.end(release);
    }
  }

  /**
   * The CRC-32C of each block of [offsetBytes, offsetBytes + lengthBytes) (block-aligned) as the
   * volume reads it, from the block maps alone: a mapped block's stored checksum, a block of zeroes'
   * elsewhere. Two copies compare equal here without moving their data (a new primary's repair of
   * where its predecessor's writes in flight may have left them unequal). Waits for the writes in
   * flight in the range.
   */
  async contentChecksums(offsetBytes: number, lengthBytes: number): Promise<Uint32Array> {
    this.checkRange(offsetBytes, lengthBytes);
    if (offsetBytes % B !== 0 || lengthBytes % B !== 0) throw new IoError('EINVAL', `volume ${this.name}: checksums are per block: ${offsetBytes}+${lengthBytes} is not block-aligned`);
    const first = offsetBytes / B;
    const count = lengthBytes / B;
    const release = await this.begin(first, first + count, false);
    try {
      const values = new Uint32Array(count);
      const crcs = new Uint32Array(count);
      this.chain.resolveRange(first, values, crcs, new Uint32Array(count));
      for (let i = 0; i < count; i++) if (values[i] < FIRST_PHYSICAL) crcs[i] = ZERO_BLOCK_CRC;
      return crcs;
    } finally {
      this.end(release);
    }
  }

  /** The value of a block as the volume sees it: physical, ZERO, or ABSENT. */
  resolve(block: number): number {
    return this.chain.resolve(block);
  }

  private async readBlocks(first: number, end: number): Promise<Buffer> {
    const count = end - first;
    const buf = takeBuffer(count * B);
    // One allocation per request for the chain's answers: entry, checksum and layer of each block.
    const entries = new Uint32Array(count * 3);
    const values = entries.subarray(0, count);
    const expected = entries.subarray(count, 2 * count);
    await this.chain.read(first, buf, values, expected, entries.subarray(2 * count));
    // The checksums of unmapped blocks are computed too (over zeroes) but not compared.
    const actual = new Uint32Array(count);
    crc32cBlocks(buf, B, actual);
    for (let i = 0; i < count; i++) {
      if (values[i] >= FIRST_PHYSICAL && actual[i] !== expected[i]) {
        const offset = (first + i) * B;
        this.checksumFailed(offset);
        throw new ChecksumError(`volume ${this.name}: checksum mismatch in block at offset ${offset}`);
      }
    }
    return buf;
  }

  /**
   * Returns whole blocks covering [first, end) with the data (lengthBytes at offsetBytes, not
   * block-aligned) laid over the current contents, in one new buffer.
   */
  private async fullBlocks(offsetBytes: number, pieces: Pieces, lengthBytes: number, first: number, end: number): Promise<Pieces> {
    const skip = offsetBytes - first * B;
    const blocks = Buffer.allocUnsafe((end - first) * B);
    // Only the first and last block can be partial; read-modify-write just those.
    if (skip !== 0) (await this.readBlocks(first, first + 1)).copy(blocks, 0);
    const tailStart = (end - 1 - first) * B;
    if ((skip + lengthBytes) % B !== 0 && (end - 1 > first || skip === 0)) {
      (await this.readBlocks(end - 1, end)).copy(blocks, tailStart);
    }
    copyPieces(pieces, blocks, skip);
    return [blocks];
  }

  /**
   * Writes whole blocks at block first; the pieces hold whole blocks in all, not each. The journal
   * records (block -> physical, crc) go out before the data, so that after a crash recovery can
   * tell, by checksum, whether the data landed.
   *
   * The data goes to newly allocated blocks, never over a block the head already maps: after a power
   * cut the new data may be on disk while its journal record, not yet synced, is not, and the block
   * would then fail the checksum the durable map holds, losing the old contents with the new. Only
   * when the pool has no room for that does a write go in place, and then its records are synced
   * before its data is written.
   */
  private async writeBlocks(first: number, blocks: Pieces): Promise<void> {
    const count = totalBytes(blocks) / B;
    const { map: head, pool, id: headLayer } = this.chain.head;
    const targets = new Array<number>(count).fill(-1);
    let inPlace = false;
    const allocated = this.allocateInto(targets, count);
    if (!(typeof allocated === 'boolean' ? allocated : await allocated)) {
      let fresh = 0;
      for (let i = 0; i < count; i++) {
        const value = head.value(first + i);
        if (value >= FIRST_PHYSICAL) targets[i] = value - FIRST_PHYSICAL;
        else fresh++;
      }
      if (fresh === count || (fresh > 0 && !(await this.allocateInto(targets, fresh)))) throw new IoError('ENOSPC', `pool ${pool.poolClass} is full`);
      inPlace = fresh < count;
    }
    const crcs = new Uint32Array(count);
    // A block in one piece (a 4 KiB write) gets its checksum as a number: handed to native code, a
    // typed array this small (V8 keeps it inside its heap) would first be moved out, a malloc per write.
    if (count === 1 && blocks.length === 1) crcs[0] = crc32c(blocks[0]);
    else crc32cPieces(blocks, B, crcs);
    const metadata = this.host.metadata;
    // One journal record per physically contiguous run (usually one per request).
    let firstSeq = 0;
    let lastSeq = 0;
    for (let start = 0, i = 1; i <= count; i++) {
      if (i < count && targets[i] === targets[i - 1] + 1) continue;
      // subarray() would move a small crcs out of V8's heap too: the whole of it as it is.
      lastSeq = metadata.recordRun(headLayer, first + start, targets[start] + FIRST_PHYSICAL, start === 0 && i === count ? crcs : crcs.subarray(start, i));
      if (start === 0) firstSeq = lastSeq;
      start = i;
    }
    this.host.writeStarted(firstSeq, pool.poolClass);
    let dataMayHaveLanded = false;
    try {
      if (inPlace) await metadata.sync();
      else await metadata.writeOut();
      dataMayHaveLanded = pool.lostError === undefined; // a lost pool writes nothing
      await pool.writeBlocks(targets, blocks);
    } catch (err) {
      const landed = inPlace ? await this.landedInPlace(first, targets, crcs) : undefined;
      this.undoIntents(first, count, targets, landed);
      this.host.writeFinished(firstSeq, pool.poolClass);
      // The undo is made durable, if the journal can be synced, before the client hears of the
      // failure: the write's records are in the journal file, and part of its data may have landed,
      // which a crash would bring back by checksum (another client's FLUSH may have made those
      // records durable), unlike what reads return from now on.
      if (dataMayHaveLanded) await metadata.sync().catch(() => undefined);
      if (err instanceof IoError) throw err;
      // A full disk (pool or metadata) is ENOSPC to the client, which may retry once there is room.
      throw new IoError((err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'ENOSPC' : 'EIO', `volume ${this.name}: write failed: ${(err as Error).message}`);
    }
    for (let i = 0; i < count; i++) {
      const old = head.set(first + i, targets[i] + FIRST_PHYSICAL, crcs[i]);
      // Reusable once the last record of this write is durable (each block's own one is no later).
      if (old >= FIRST_PHYSICAL && old !== targets[i] + FIRST_PHYSICAL) pool.allocator.freeAfterSync(old - FIRST_PHYSICAL, lastSeq);
    }
    this.host.writeFinished(firstSeq, pool.poolClass);
  }

  /**
   * Fills the -1 entries of targets with newly allocated blocks; false if the pool has no room. At
   * once, unless the room is in frees deferred until the journal is durable: then after a flush.
   */
  private allocateInto(targets: number[], fresh: number): boolean | Promise<boolean> {
    const allocator = this.chain.head.pool.allocator;
    const runs = allocator.allocate(fresh);
    if (runs) return fillTargets(targets, runs);
    if (allocator.pendingCount === 0) return false;
    return this.host.flush(this.chain.head.pool.poolClass).then(() => {
      const freed = allocator.allocate(fresh);
      return freed !== undefined && fillTargets(targets, freed);
    });
  }

  /**
   * After a failed write in place: the new checksum of each of its blocks whose new data landed. A
   * disk may fail a write part way, and a block whose new data landed would fail its old checksum
   * on every read. A block that cannot be read, or holds neither version, keeps the old checksum
   * and reads as damaged, which it is.
   */
  private async landedInPlace(first: number, targets: number[], crcs: Uint32Array): Promise<(number | undefined)[]> {
    const { map: head, pool } = this.chain.head;
    const block = Buffer.allocUnsafe(B);
    const landed: (number | undefined)[] = [];
    for (let i = 0; i < targets.length; i++) {
      if (head.value(first + i) !== targets[i] + FIRST_PHYSICAL) continue;
      try {
        await pool.read(targets[i], block);
        if (crc32c(block) === crcs[i]) landed[i] = crcs[i];
      } catch {
        // Unreadable: it keeps its old checksum.
      }
    }
    return landed;
  }

  /**
   * After a failed write: journal the entries as they now stand (the old ones, but the new checksum
   * for a block written in place whose new data landed) and give back blocks it allocated.
   */
  private undoIntents(first: number, count: number, targets: number[], landed: (number | undefined)[] = []): void {
    const { map: head, pool, id: headLayer } = this.chain.head;
    for (let i = 0; i < count; i++) {
      const value = head.value(first + i);
      const landedCrc = landed[i];
      if (landedCrc !== undefined) head.set(first + i, value, landedCrc);
      this.host.metadata.recordMap(headLayer, first + i, value, head.crc(first + i));
      if (value !== targets[i] + FIRST_PHYSICAL) pool.allocator.freeAfterSync(targets[i], this.host.metadata.lastSeq);
    }
  }

  private async zeroRange(offsetBytes: number, lengthBytes: number, fua: boolean, noHole: boolean): Promise<void> {
    this.checkWritable(offsetBytes, lengthBytes);
    const endBytes = offsetBytes + lengthBytes;
    let first = Math.ceil(offsetBytes / B);
    const end = Math.floor(endBytes / B);
    if (first >= end) {
      // Entirely inside one block: zero it by writing.
      if (lengthBytes > 0) await this.write(offsetBytes, Buffer.alloc(lengthBytes), false);
    } else {
      if (offsetBytes < first * B) await this.write(offsetBytes, Buffer.alloc(first * B - offsetBytes), false);
      if (endBytes > end * B) await this.write(end * B, Buffer.alloc(endBytes - end * B), false);
      for (; first < end; first += ZERO_CHUNK_BLOCKS) {
        const chunkEnd = Math.min(end, first + ZERO_CHUNK_BLOCKS);
        if (noHole) await this.write(first * B, Buffer.alloc((chunkEnd - first) * B), false);
        else await this.unmapBlocks(first, chunkEnd);
      }
    }
    if (fua) await this.host.flush(this.chain.head.pool.poolClass);
  }

  /** Drops the head's blocks in [first, end); hides the parents' data with ZERO entries. */
  private async unmapBlocks(first: number, end: number): Promise<void> {
    const release = await this.begin(first, end, true);
    try {
      this.checkWritable(first * B, (end - first) * B); // again: see write()
      const { map: head, pool, id: headLayer } = this.chain.head;
      const metadata = this.host.metadata;
      for (let block = first; block < end; block++) {
        const value = this.chain.parentHasData(block) ? ZERO : ABSENT;
        if (head.value(block) === value) continue;
        const seq = metadata.recordMap(headLayer, block, value, 0);
        const old = head.set(block, value, 0);
        if (old >= FIRST_PHYSICAL) pool.allocator.freeAfterSync(old - FIRST_PHYSICAL, seq);
        this.host.mapChanged();
      }
    } finally {
      this.end(release);
    }
  }

  /** Enters the quiesce gate and takes the range lock: at once when neither waits (the common case), else a promise. */
  private begin(first: number, end: number, exclusive: boolean): Release | Promise<Release> {
    const gate = this.quiesce.enter();
    return gate ? gate.then(() => this.lockRange(first, end, exclusive)) : this.lockRange(first, end, exclusive);
  }

  /** Inside the gate: the range lock, unless weftd is shutting down (then the gate is left). */
  private lockRange(first: number, end: number, exclusive: boolean): Release | Promise<Release> {
    if (this.host.closed) {
      this.quiesce.leave();
      throw new IoError('ESHUTDOWN', 'weftd is shutting down');
    }
    return this.lock.acquire(first, end, exclusive);
  }

  private end(release: Release): void {
    release();
    this.quiesce.leave();
  }

  private checksumFailed(offsetBytes: number): void {
    this.checksumErrors++;
    this.host.checksumError(this.name, offsetBytes);
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new IoError('EINVAL', `volume ${this.name}: range ${offsetBytes}+${lengthBytes} is past the end (${this.sizeBytes} bytes)`);
    }
  }

  private checkWritable(offsetBytes: number, lengthBytes: number): void {
    if (this.readOnly) throw new IoError('EPERM', `${this.name} is read-only`);
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new IoError('ENOSPC', `volume ${this.name}: range ${offsetBytes}+${lengthBytes} is past the end (${this.sizeBytes} bytes)`);
    }
  }

  // Capabilities (see BlockDevice). The engine's flush covers every completed write of the volume,
  // whichever handle made it. No fast zero: writeZeroes with noHole writes every block, and it
  // does not look at fastZero.
  canMultiConn(): boolean {
    return true;
  }

  canFua(): boolean {
    return !this.readOnly;
  }

  canTrim(): boolean {
    return !this.readOnly;
  }

  canZero(): boolean {
    return !this.readOnly;
  }

  canFastZero(): boolean {
    return false;
  }
}

/** Fills the -1 entries of targets with the blocks of runs, in order; true. */
function fillTargets(targets: number[], runs: readonly BlockRun[]): true {
  let run = 0;
  let next = runs[0].start;
  let left = runs[0].count;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] !== -1) continue;
    if (left === 0) {
      run++;
      next = runs[run].start;
      left = runs[run].count;
    }
    targets[i] = next++;
    left--;
  }
  return true;
}

/** Reads a block for a scrub: the error if the disk fails to read it (EIO, a bad sector); other errors are thrown. */
async function readError(pool: Pool, start: number, buf: Buffer): Promise<Error | undefined> {
  try {
    await pool.read(start, buf);
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EIO' || (err instanceof IoError && err.errno === 'EIO')) return err as Error;
    throw err;
  }
}
