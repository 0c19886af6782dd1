// A pool: every member of one service class, addressed as one range of physical blocks
// (member 0's blocks first, then member 1's, ...), with one allocator over that range.

import * as fs from 'fs';
import { BlockAllocator } from './allocator';
import { slicePieces, totalBytes, type Pieces } from '../pieces';
import { fdatasync, preadAll, preadAllSync, pwritevAll, pwritevAllSync, RESOLVED, settleAll } from './file-io';
import { DATA_OFFSET_BYTES, OpenMember } from './pool-member';

const BLOCK_BYTES = 4096;
/**
 * Requests up to this size are done with synchronous pread/pwrite on the event-loop thread: for
 * data in the page cache that costs a few microseconds, several times less than handing the call
 * to libuv's thread pool and back (4k random I/O: about twice the IOPS). Larger requests go to the
 * pool, where the copy runs beside the event loop (1 MiB writes: about 10% faster than inline).
 */
const SYNC_IO_MAX_BYTES = 128 * 1024;

interface PlacedMember extends OpenMember {
  firstBlock: number;
  dirty: boolean;
}

export class Pool {
  readonly allocator: BlockAllocator;
  private readonly members: PlacedMember[] = [];

  constructor(readonly poolClass: string, members: OpenMember[]) {
    let firstBlock = 0;
    for (const m of members) {
      // Dirty from the start: after a crash, a member may hold writes of the previous process that
      // reached only the page cache, and recovery keeps them (their checksums match).
      this.members.push({ ...m, firstBlock, dirty: true });
      firstBlock += m.superblock.blocks;
    }
    this.allocator = new BlockAllocator(firstBlock);
  }

  get totalBlocks(): number {
    return this.allocator.totalBlocks;
  }

  memberList(): { path: string; uuid: string; blocks: number }[] {
    return this.members.map((m) => ({ path: m.path, uuid: m.superblock.uuid, blocks: m.superblock.blocks }));
  }

  /** Reads count blocks starting at physical block start into buf (count * 4096 bytes). */
  read(start: number, buf: Buffer): Promise<void> {
    return this.eachSegment(start, buf.length, (m, position, fromBytes, toBytes) => {
      const part = toBytes - fromBytes === buf.length ? buf : buf.subarray(fromBytes, toBytes);
      if (part.length > SYNC_IO_MAX_BYTES) return preadAll(m.fd, part, position);
      preadAllSync(m.fd, part, position);
      return RESOLVED;
    });
  }

  /** Writes the pieces (whole blocks in all, not each) at physical block start. */
  write(start: number, pieces: Pieces): Promise<void> {
    return this.eachSegment(start, totalBytes(pieces), (m, position, fromBytes, toBytes) => {
      const part = slicePieces(pieces, fromBytes, toBytes);
      if (toBytes - fromBytes > SYNC_IO_MAX_BYTES) {
        // Dirty once it is done: a sync that ran while it was in flight did not cover it.
        return pwritevAll(m.fd, part, position).finally(() => (m.dirty = true));
      }
      m.dirty = true;
      pwritevAllSync(m.fd, part, position);
      return RESOLVED;
    });
  }

  /** Makes every completed write durable. */
  async sync(): Promise<void> {
    const dirty = this.members.filter((m) => m.dirty);
    for (const m of dirty) m.dirty = false;
    await Promise.all(dirty.map((m) => fdatasync(m.fd)));
  }

  close(): void {
    for (const m of this.members) fs.closeSync(m.fd);
    this.members.length = 0;
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
