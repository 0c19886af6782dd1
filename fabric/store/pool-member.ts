// One backing store of a pool: a file Weft created in a directory, an existing file, or a block
// device. Its first MiB holds a superblock naming the pool and member; data blocks follow.

import * as fs from 'fs';
import * as path from 'path';
import { randomUUID } from 'crypto';
import { failedPrecondition, invalidArgument } from '../errors';
import type { Logger } from '../logger';
import { formatSize } from '../units';
import { BLOCK_BYTES } from './block-size';
import { fsyncDir, fsyncSync } from './file-io';

export const MEMBER_FORMAT = 1;
const MAGIC = 'WEFT-POOL-MEMBER';
/** Data starts here, so data blocks are aligned for direct I/O and the superblock has room. */
export const DATA_OFFSET_BYTES = 1024 * 1024;
/** A member with fewer data blocks than this is refused. */
const MIN_BLOCKS = 16;
/**
 * Block maps and journal records hold a block's number (plus 2: 0 and 1 mean absent and zero) in 32
 * bits: a pool's blocks past this many could not be named.
 */
export const MAX_POOL_BLOCKS = 0xffff_ffff - 2;
/** The smallest member: its superblock area and MIN_BLOCKS data blocks. */
export const MIN_MEMBER_BYTES = DATA_OFFSET_BYTES + MIN_BLOCKS * BLOCK_BYTES;

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

/** Where a --pool path puts its member, found without creating or writing anything. */
export interface MemberLocation {
  poolClass: string;
  /** The member's file or device: the given path, or the backing file in the given directory. */
  file: string;
  /** False for a backing file not created yet; newFileBytes is then its size. */
  exists: boolean;
  newFileBytes?: number;
}

/** A member opened and read, not written. superblock is undefined while it is not initialized. */
export interface ReadMember {
  path: string;
  fd: number;
  superblock?: MemberSuperblock;
  /** Whether the first MiB holds only zeroes (so a new superblock may go there). */
  emptyHead: boolean;
  /** Size of the file or device, superblock included. */
  sizeBytes: number;
}

/**
 * Checks a --pool path: a directory (its backing file may not exist yet), a file or a block device.
 * A size is allowed only for a directory, where it is the size of the backing file to create.
 */
export function locateMember(givenPath: string, poolClass: string, sizeBytes: number | undefined): MemberLocation {
  const stat = statOrUndefined(givenPath);
  if (!stat) throw invalidArgument(`pool ${poolClass}: ${givenPath} does not exist`);
  if (stat.isDirectory()) {
    const file = memberFileInDirectory(givenPath, poolClass);
    if (fs.existsSync(file)) return { poolClass, file, exists: true };
    const newFileBytes = sizeBytes ?? defaultSizeFor(givenPath);
    memberBlocks(newFileBytes, poolClass);
    return { poolClass, file, exists: false, newFileBytes };
  }
  if (!stat.isFile() && !stat.isBlockDevice()) {
    throw invalidArgument(`pool ${poolClass}: ${givenPath} is neither a directory, a file nor a block device`);
  }
  if (sizeBytes !== undefined) {
    throw invalidArgument(`pool ${poolClass}: a size is only allowed when ${givenPath} is a directory`);
  }
  return { poolClass, file: givenPath, exists: true };
}

/**
 * Opens an existing member for I/O and reads its superblock, writing nothing. A superblock of
 * another format or pool class is refused; what else the head holds is the caller's to judge.
 */
export function readMember(file: string, poolClass: string): ReadMember {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(DATA_OFFSET_BYTES);
    fs.readSync(fd, head, 0, head.length, 0);
    const superblock = parseSuperblock(head);
    if (superblock && superblock.format !== MEMBER_FORMAT) {
      throw failedPrecondition(
        `pool ${poolClass}: ${file} has on-disk format ${superblock.format}; this weftd reads format ${MEMBER_FORMAT}`,
      );
    }
    if (superblock && superblock.class !== poolClass) {
      throw failedPrecondition(`${file} belongs to pool class "${superblock.class}", not "${poolClass}"`);
    }
    const sizeBytes = sizeOf(file, fd);
    if (superblock) checkHoldsBlocks(file, poolClass, superblock, sizeBytes);
    return { path: file, fd, superblock, emptyHead: !superblock && !head.some((b) => b !== 0), sizeBytes };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/**
 * A member shorter than its superblock's blocks (a file cut short, a disk replaced by a smaller copy)
 * would read zeroes as data past its end, and a count damaged in the superblock would shift every
 * later member's blocks: both refused while nothing has been read or written.
 */
function checkHoldsBlocks(file: string, poolClass: string, superblock: MemberSuperblock, sizeBytes: number): void {
  const { blocks } = superblock;
  if (Number.isSafeInteger(blocks) && blocks >= MIN_BLOCKS && DATA_OFFSET_BYTES + blocks * BLOCK_BYTES <= sizeBytes) return;
  throw failedPrecondition(
    `pool ${poolClass}: ${file} is ${sizeBytes} bytes, but its superblock names ${JSON.stringify(blocks)} blocks of ${BLOCK_BYTES} bytes after its first MiB: ` +
      'it was cut short, or its superblock is damaged. weftd has written nothing to it. Give the right file or disk with --pool, or restore this one from a backup',
  );
}

/**
 * Checks that a member without a superblock may become a new one: only zeroes in its first MiB (so
 * that a mistyped path cannot destroy data) and room for some blocks. Writes nothing.
 */
export function checkInitializable(member: ReadMember, poolClass: string): void {
  if (!member.emptyHead) {
    throw failedPrecondition(
      `pool ${poolClass}: ${member.path} is not a Weft pool member and its first MiB is not empty; refusing to overwrite it`,
    );
  }
  memberBlocks(member.sizeBytes, poolClass);
}

/**
 * Makes a new member, named uuid: creates the backing file of a location that does not exist, or
 * writes the superblock of a checked one.
 */
export function initializeMember(location: MemberLocation, member: ReadMember | undefined, uuid: string = randomUUID()): OpenMember {
  if (member) return { path: member.path, fd: member.fd, superblock: writeSuperblock(member.fd, location.poolClass, member.sizeBytes, uuid) };
  createBackingFile(location.file, location.newFileBytes!, location.poolClass, uuid);
  const created = readMember(location.file, location.poolClass);
  return { path: created.path, fd: created.fd, superblock: created.superblock! };
}

function createBackingFile(file: string, sizeBytes: number, poolClass: string, uuid: string): void {
  const fd = fs.openSync(file, 'wx');
  try {
    fs.ftruncateSync(fd, sizeBytes); // sparse: thin until written
    writeSuperblock(fd, poolClass, sizeBytes, uuid);
  } finally {
    fs.closeSync(fd);
  }
  // The catalog names the member next: after a power cut, its file must still be in the directory.
  fsyncDir(path.dirname(file));
}

/** The data blocks of a member of sizeBytes; refuses one too small to be worth a member. */
export function memberBlocks(sizeBytes: number, poolClass: string): number {
  const blocks = Math.floor((sizeBytes - DATA_OFFSET_BYTES) / BLOCK_BYTES);
  if (blocks < MIN_BLOCKS) throw invalidArgument(`pool ${poolClass}: size ${sizeBytes} bytes is too small (at least ${MIN_MEMBER_BYTES})`);
  return blocks;
}

function writeSuperblock(fd: number, poolClass: string, sizeBytes: number, uuid: string): MemberSuperblock {
  const blocks = memberBlocks(sizeBytes, poolClass);
  const superblock: MemberSuperblock = { magic: MAGIC, format: MEMBER_FORMAT, class: poolClass, uuid, blocks };
  const buf = Buffer.alloc(BLOCK_BYTES);
  buf.write(JSON.stringify(superblock));
  fs.writeSync(fd, buf, 0, buf.length, 0);
  fsyncSync(fd);
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

/**
 * Member files are sparse: they take room from their file system as blocks are first written.
 * Those that together can grow by more than their file system has free fail writes with ENOSPC
 * before their pools are full, and, on the file system of the data dir, the metadata's writes with
 * them (nothing can then be changed, deletes included). Said at start, with the remedy.
 */
export function warnIfOvercommitted(members: readonly OpenMember[], logger: Logger): void {
  const byFileSystem = new Map<number, { growth: number; files: string[] }>();
  for (const member of members) {
    const stat = fs.fstatSync(member.fd);
    if (!stat.isFile()) continue;
    const group = byFileSystem.get(stat.dev) ?? { growth: 0, files: [] };
    group.growth += Math.max(0, stat.size - stat.blocks * 512);
    group.files.push(member.path);
    byFileSystem.set(stat.dev, group);
  }
  for (const { growth, files } of byFileSystem.values()) {
    let free: number;
    try {
      const fsStat = fs.statfsSync(files[0]);
      free = fsStat.bavail * fsStat.bsize;
    } catch {
      continue; // only a warning
    }
    if (growth <= free) continue;
    logger.warn(
      { members: files, canGrowBytes: growth, freeBytes: free },
      `pool member files ${files.join(', ')} can still grow by ${formatSize(growth)} in all, but their file system has ${formatSize(free)} free: ` +
        'writes will fail with ENOSPC before the pools are full (and, if the data dir is on that file system, so will every change of metadata). ' +
        'Free space there, or give the members smaller sizes or disks of their own',
    );
  }
}
