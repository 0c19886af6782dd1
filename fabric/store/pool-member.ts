// One backing store of a pool: a file Weft created in a directory, an existing file, or a block
// device. Its first MiB holds a superblock naming the pool and member; data blocks follow.

import * as fs from 'fs';
import * as path from 'path';
import { randomUUID } from 'crypto';
import { failedPrecondition, invalidArgument } from '../errors';

export const MEMBER_FORMAT = 1;
const MAGIC = 'WEFT-POOL-MEMBER';
/** Data starts here, so data blocks are aligned for direct I/O and the superblock has room. */
export const DATA_OFFSET_BYTES = 1024 * 1024;
const BLOCK_BYTES = 4096;

export interface MemberSuperblock {
  magic: string;
  format: number;
  class: string;
  uuid: string;
  /** Data blocks this member holds (fixed when it is created). */
  blocks: number;
}

export interface OpenMember {
  path: string;
  fd: number;
  superblock: MemberSuperblock;
}

/** Where Weft creates the backing file when a pool member is given as a directory. */
export function memberFileInDirectory(dir: string, poolClass: string): string {
  return path.join(dir, `weft-pool-${poolClass}.img`);
}

/**
 * Opens (or, when new, initializes) a member. A directory gets a sparse backing file of
 * sizeBytes; an existing file or device is used whole. A file or device that holds something
 * other than a Weft superblock or zeroes in its first MiB is refused, so that a mistyped path
 * cannot destroy data.
 */
export function openMember(givenPath: string, poolClass: string, sizeBytes: number | undefined): OpenMember {
  const stat = statOrUndefined(givenPath);
  if (!stat) throw invalidArgument(`pool ${poolClass}: ${givenPath} does not exist`);
  if (stat.isDirectory()) {
    const file = memberFileInDirectory(givenPath, poolClass);
    if (!fs.existsSync(file)) createBackingFile(file, sizeBytes ?? defaultSizeFor(givenPath), poolClass);
    return openExisting(file, poolClass);
  }
  if (!stat.isFile() && !stat.isBlockDevice()) {
    throw invalidArgument(`pool ${poolClass}: ${givenPath} is neither a directory, a file nor a block device`);
  }
  if (sizeBytes !== undefined) {
    throw invalidArgument(`pool ${poolClass}: a size is only allowed when ${givenPath} is a directory`);
  }
  return openExisting(givenPath, poolClass);
}

function openExisting(file: string, poolClass: string): OpenMember {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(DATA_OFFSET_BYTES);
    fs.readSync(fd, head, 0, head.length, 0);
    let superblock = parseSuperblock(head);
    if (!superblock) {
      if (head.some((b) => b !== 0)) {
        throw failedPrecondition(
          `pool ${poolClass}: ${file} is not a Weft pool member and its first MiB is not empty; refusing to overwrite it`,
        );
      }
      superblock = writeSuperblock(fd, poolClass, sizeOf(file, fd));
    }
    if (superblock.format !== MEMBER_FORMAT) {
      throw failedPrecondition(
        `pool ${poolClass}: ${file} has on-disk format ${superblock.format}; this weftd reads format ${MEMBER_FORMAT}`,
      );
    }
    if (superblock.class !== poolClass) {
      throw failedPrecondition(`${file} belongs to pool class "${superblock.class}", not "${poolClass}"`);
    }
    return { path: file, fd, superblock };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function createBackingFile(file: string, sizeBytes: number, poolClass: string): void {
  if (sizeBytes < DATA_OFFSET_BYTES + 16 * BLOCK_BYTES) {
    throw invalidArgument(`pool ${poolClass}: size ${sizeBytes} bytes is too small (at least 2 MiB)`);
  }
  const fd = fs.openSync(file, 'wx');
  try {
    fs.ftruncateSync(fd, sizeBytes); // sparse: thin until written
    writeSuperblock(fd, poolClass, sizeBytes);
  } finally {
    fs.closeSync(fd);
  }
}

function writeSuperblock(fd: number, poolClass: string, sizeBytes: number): MemberSuperblock {
  const blocks = Math.floor((sizeBytes - DATA_OFFSET_BYTES) / BLOCK_BYTES);
  if (blocks < 16) throw invalidArgument(`pool ${poolClass}: member of ${sizeBytes} bytes is too small`);
  const superblock: MemberSuperblock = { magic: MAGIC, format: MEMBER_FORMAT, class: poolClass, uuid: randomUUID(), blocks };
  const buf = Buffer.alloc(BLOCK_BYTES);
  buf.write(JSON.stringify(superblock));
  fs.writeSync(fd, buf, 0, buf.length, 0);
  fs.fsyncSync(fd);
  return superblock;
}

function parseSuperblock(head: Buffer): MemberSuperblock | undefined {
  if (head.subarray(0, 2).toString() !== '{"') return undefined;
  const end = head.indexOf(0);
  try {
    const parsed = JSON.parse(head.subarray(0, end < 0 ? BLOCK_BYTES : end).toString()) as MemberSuperblock;
    return parsed.magic === MAGIC ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function sizeOf(file: string, fd: number): number {
  const stat = fs.fstatSync(fd);
  if (stat.isFile()) return stat.size;
  // A block device reports size 0 to stat; the kernel publishes its size in 512-byte sectors.
  const name = path.basename(fs.realpathSync(file));
  return Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim()) * 512;
}

/** Default size of a new backing file: the filesystem's free space less 10% (it is sparse). */
function defaultSizeFor(dir: string): number {
  const stats = fs.statfsSync(dir);
  const free = stats.bavail * stats.bsize;
  return Math.max(64 * 1024 * 1024, Math.floor((free * 0.9) / (1024 * 1024)) * 1024 * 1024);
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}
