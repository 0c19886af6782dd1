// Opens the pools that --pool names and matches their members with those the catalog records. Every
// check comes before the first write, so that a refused start leaves every pool member as it was.

import * as fs from 'fs';
import * as path from 'path';
import { randomUUID } from 'crypto';
import type { Logger } from 'pino';
import { failedPrecondition, invalidArgument } from '../errors';
import { fsyncDir } from '../store/file-io';
import { Pool } from '../store/pool';
import {
  checkInitializable,
  initializeMember,
  locateMember,
  MAX_POOL_BLOCKS,
  memberBlocks,
  readMember,
  type MemberLocation,
  type OpenMember,
  type ReadMember,
  warnIfOvercommitted,
} from '../store/pool-member';
import type { Catalog, PoolMemberRecord, PoolRecord } from './catalog';
import type { PoolSpec } from './node-store';

export interface OpenedPools {
  pools: Map<string, Pool>;
  /** What the catalog is to record now: the given classes, recorded members first, then new ones. */
  records: PoolRecord[];
}

/** A --pool member, looked at but not written. */
interface Candidate {
  location: MemberLocation;
  /** Undefined for a backing file that is still to be created. */
  member?: ReadMember;
}

/**
 * A member the catalog records must be there with its superblock and uuid; only a path the
 * catalog does not know may become a new member. A recorded member may have moved to another path
 * (a disk renamed): it is found by its uuid.
 */
export function openPools(specs: PoolSpec[], catalog: Catalog, made: MembersMade, logger: Logger): OpenedPools {
  const candidates: Candidate[] = [];
  const opened: OpenMember[] = [];
  try {
    for (const spec of specs) {
      const candidate = inspect(spec, catalog, made, candidates);
      candidates.push(candidate);
      const madeBytes = candidate.member?.sizeBytes;
      if (spec.sizeBytes !== undefined && madeBytes !== undefined && madeBytes !== spec.sizeBytes) {
        // A size sizes the backing file a directory gets; a pool does not grow or shrink by it.
        logger.warn({ pool: spec.class, file: candidate.location.file, sizeBytes: madeBytes, askedBytes: spec.sizeBytes }, 'the pool\'s backing file exists: it keeps the size it was made with, not the one --pool gives');
      }
    }
    checkRecordedMembers(candidates, catalog);
    checkAddressable(candidates, catalog);
    for (const { location, member } of candidates) {
      if (member?.superblock) {
        opened.push({ path: member.path, fd: member.fd, superblock: member.superblock });
        continue;
      }
      const uuid = randomUUID();
      made.add(uuid); // before its superblock: a start stopped before the catalog records it finds it its own
      opened.push(initializeMember(location, member, uuid));
    }
  } catch (err) {
    const fds = new Set([...candidates.map((c) => c.member?.fd), ...opened.map((m) => m.fd)]);
    for (const fd of fds) if (fd !== undefined) fs.closeSync(fd);
    throw err;
  }
  const pools = new Map<string, Pool>();
  for (const poolClass of new Set(specs.map((s) => s.class))) {
    const members = opened.filter((_m, i) => candidates[i].location.poolClass === poolClass);
    const recorded = catalog.pools.find((p) => p.class === poolClass)?.members ?? [];
    const ordered = recorded.map((r) => members.find((m) => m.superblock.uuid === r.uuid)!);
    pools.set(poolClass, new Pool(poolClass, [...ordered, ...members.filter((m) => !ordered.includes(m))], logger));
  }
  warnIfOvercommitted(opened, logger);
  const records = [...pools.values()].map((pool) => ({ class: pool.poolClass, members: pool.memberList() }));
  return { pools, records };
}

/**
 * A new member that would take its pool past the blocks it can address (MAX_POOL_BLOCKS, 16 TiB) is
 * refused before anything is written. A pool of recorded members that is already larger (made by an
 * earlier version) keeps working, its blocks past the limit left unused (Pool).
 */
function checkAddressable(candidates: Candidate[], catalog: Catalog): void {
  const blocks = new Map<string, number>();
  const growing = new Set<string>();
  for (const { location, member } of candidates) {
    const memberBlockCount = member?.superblock?.blocks ?? memberBlocks(member?.sizeBytes ?? location.newFileBytes!, location.poolClass);
    blocks.set(location.poolClass, (blocks.get(location.poolClass) ?? 0) + memberBlockCount);
    if (!recordsMember(catalog, member?.superblock?.uuid)) growing.add(location.poolClass);
  }
  for (const [poolClass, count] of blocks) {
    if (count > MAX_POOL_BLOCKS && growing.has(poolClass)) {
      throw invalidArgument(`pool ${poolClass}: its members hold ${count} blocks of 4 KiB, more than one pool can address (${MAX_POOL_BLOCKS}, about 16 TiB); give the rest to a pool of another class`);
    }
  }
}

function inspect(spec: PoolSpec, catalog: Catalog, made: MembersMade, earlier: Candidate[]): Candidate {
  const location = locateMember(spec.path, spec.class, spec.sizeBytes);
  const identity = identityOf(location);
  if (earlier.some((c) => identityOf(c.location) === identity)) {
    throw invalidArgument(`pool ${spec.class}: ${spec.path} is given twice (the same file or device under two names counts)`);
  }
  const recorded = recordedAt(catalog, location.file);
  if (!location.exists) {
    if (recorded) throw missingMember(location.file, recorded);
    return { location };
  }
  const member = readMember(location.file, spec.class);
  try {
    if (recorded) checkRecorded(member, recorded);
    else if (!member.superblock) checkInitializable(member, spec.class);
    else if (!recordsMember(catalog, member.superblock.uuid) && !made.has(member.superblock.uuid)) throw foreignMember(member, spec.class);
    const uuid = member.superblock?.uuid;
    if (uuid && earlier.some((c) => c.member?.superblock?.uuid === uuid)) {
      throw invalidArgument(`pool ${spec.class}: ${spec.path} is given twice (pool member ${uuid})`);
    }
  } catch (err) {
    fs.closeSync(member.fd);
    throw err;
  }
  return { location, member };
}

/**
 * What a member is, whatever path names it: a block device by its device number, a file by its
 * inode (a symlink or a hard link is the same file), a file still to be created by its real path.
 */
function identityOf(location: MemberLocation): string {
  if (!location.exists) return `new:${path.join(fs.realpathSync(path.dirname(location.file)), path.basename(location.file))}`;
  const stat = fs.statSync(location.file);
  return stat.isBlockDevice() ? `device:${stat.rdev}` : `file:${stat.dev}:${stat.ino}`;
}

/** Whether the catalog records a member of this uuid (at whatever path). */
function recordsMember(catalog: Catalog, uuid: string | undefined): boolean {
  return uuid !== undefined && catalog.pools.some((p) => p.members.some((m) => m.uuid === uuid));
}

/** In the data dir: MembersMade's file. */
export const MEMBERS_MADE_FILE = 'members-made';

/**
 * The uuids of the members this data dir has made, each written down (synced) before its superblock:
 * a first start that stopped before the catalog recorded a member knows it for its own.
 */
export class MembersMade {
  private readonly uuids: Set<string>;

  constructor(private readonly file: string) {
    this.uuids = new Set(fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
  }

  has(uuid: string): boolean {
    return this.uuids.has(uuid);
  }

  add(uuid: string): void {
    const existed = fs.existsSync(this.file);
    const fd = fs.openSync(this.file, 'a');
    try {
      fs.writeSync(fd, `${uuid}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (!existed) fsyncDir(path.dirname(this.file));
    this.uuids.add(uuid);
  }
}

/** A Weft member this data dir does not record (nor under another path): another data dir's, whose data it holds. */
function foreignMember(member: ReadMember, poolClass: string): Error {
  return failedPrecondition(
    `pool ${poolClass}: ${member.path} holds pool member ${member.superblock?.uuid}, which this data dir does not record: it belongs to ` +
      'another data dir (or one that was lost), and taking it would destroy the volumes on it. weftd has written nothing to it. ' +
      'Give another path with --pool, or, if its data is not wanted, zero its first MiB to reuse it',
  );
}

interface RecordedMember extends PoolMemberRecord {
  class: string;
}

function recordedAt(catalog: Catalog, file: string): RecordedMember | undefined {
  for (const pool of catalog.pools) {
    const member = pool.members.find((m) => path.resolve(m.path) === path.resolve(file));
    if (member) return { ...member, class: pool.class };
  }
  return undefined;
}

function checkRecorded(member: ReadMember, recorded: RecordedMember): void {
  const { class: poolClass, uuid } = recorded;
  if (!member.superblock) {
    const found = member.emptyHead ? 'only zeroes' : 'no Weft superblock';
    throw failedPrecondition(
      `pool ${poolClass}: ${member.path} is pool member ${uuid} in the data dir, but its first MiB holds ${found}: ` +
        'it was zeroed or overwritten. weftd has written nothing to it. Give the right file or disk with --pool, ' +
        'or restore this one from a backup',
    );
  }
  if (member.superblock.uuid !== uuid) {
    throw failedPrecondition(
      `pool ${poolClass}: ${member.path} holds pool member ${member.superblock.uuid}, but the data dir records member ${uuid} ` +
        'at this path: another file or disk took its place. weftd has written nothing to it. Give the right one with --pool',
    );
  }
  if (member.superblock.blocks !== recorded.blocks) {
    throw failedPrecondition(
      `pool ${poolClass}: ${member.path} (pool member ${uuid}) names ${member.superblock.blocks} blocks in its superblock, but the data dir records ` +
        `${recorded.blocks}: its superblock was changed or damaged. weftd has written nothing to it. Restore it from a backup`,
    );
  }
}

function missingMember(file: string, recorded: RecordedMember): Error {
  return failedPrecondition(
    `pool ${recorded.class}: ${file} is pool member ${recorded.uuid} in the data dir, but it does not exist. weftd has ` +
      'created nothing in its place (an empty member would lose the volumes on it). Restore the file, or mount the ' +
      'filesystem that holds it, or give its new path with --pool',
  );
}

/** Every recorded member of a given class must be among the given ones; a class left out may not hold volumes. */
function checkRecordedMembers(candidates: Candidate[], catalog: Catalog): void {
  for (const recorded of catalog.pools) {
    const given = candidates.filter((c) => c.location.poolClass === recorded.class);
    if (given.length === 0) {
      if (catalog.layers.some((l) => l.pool === recorded.class)) {
        throw failedPrecondition(
          `pool ${recorded.class} holds volumes but is not given with --pool (its members: ${recorded.members.map((m) => m.path).join(', ')})`,
        );
      }
      continue;
    }
    for (const m of recorded.members) {
      if (!given.some((c) => c.member?.superblock?.uuid === m.uuid)) {
        throw failedPrecondition(`pool ${recorded.class}: member ${m.path} (uuid ${m.uuid}) is recorded in the data dir but not given with --pool`);
      }
    }
  }
}
