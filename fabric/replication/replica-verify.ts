// `weft volume verify` of a replicated volume, on its primary: compares the copies in sync and
// repairs them. A block that fails its checksum on a copy gets the content of a copy that reads
// good; a block that reads good everywhere but differs is made equal to the primary's (what clients
// have been reading: only a write unacknowledged at a crash leaves copies different). Window by
// window, client changes of the window held off meanwhile, so that client I/O goes on.
//
// Replicas cannot tell over NBD what they have allocated (the client speaks simple replies only),
// so every block of the volume is read from every copy; the primary's holes are compared too.

import { isAllZero } from '../buffers';
import { cancelled, ChecksumError, IoError } from '../errors';
import { BLOCK_BYTES } from '../store/block-size';
import type { VolumeLayer } from '../volume/block-device';
import type { ReplicaVerifyResult, SkippedReplica } from '../volume/types';
import { DirtyMap } from './dirty-map';
import { NbdConnectionError } from '../nbd/client';
import { isFenced, type InSyncPeer, type ReplicatedDevice } from './replicated-device';

/** Compared and repaired at once, client changes of it held off meanwhile. */
const WINDOW_BYTES = 1024 * 1024;

export interface ReplicasVerified {
  checkedBlocks: number;
  /** Blocks no copy reads good: not repaired. */
  badBlockOffsets: number[];
  replicas: ReplicaVerifyResult[];
  skippedReplicas: SkippedReplica[];
}

/** One copy as the verify reads and repairs it. */
interface Copy {
  result: ReplicaVerifyResult;
  /** A remote copy's failure ends its part in the verify only; the local copy's ends the verify. */
  remote: boolean;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** FUA: a repair is durable once done. */
  write(offsetBytes: number, data: Buffer): Promise<void>;
  /** The read failed for what was read, not for the copy as a whole: a block failed its checksum. */
  isBadRead(err: unknown): boolean;
}

/** A copy's content of a window, and the blocks (by index in the window) that failed their checksum. */
interface Content {
  copy: Copy;
  data: Buffer;
  bad: Set<number>;
}

/** Why a copy left the verify: it went out of sync meanwhile, or failed a read or a repair of the verify's own. */
type DropReason = 'out' | 'failed';

/** One rewrite of a copy's blocks. */
interface Repair {
  offsetBytes: number;
  data: Buffer;
  kind: 'checksum' | 'mismatch';
}

/** Compares and repairs every block of the volume on the primary (self) and its in-sync copies; onProgress hears after every window; stop, once aborted, ends it (ABORTED) before the next window. */
export async function verifyReplicas(
  device: ReplicatedDevice,
  self: string,
  onProgress?: (doneBlocks: number, totalBlocks: number) => void,
  stop?: AbortSignal,
): Promise<ReplicasVerified> {
  const sizeBytes = device.sizeBytes;
  const windows = Array.from({ length: Math.ceil(sizeBytes / WINDOW_BYTES) }, (_, i) => i * WINDOW_BYTES);
  // A copy that fails part way (a read or a repair there) may still differ in the window it failed
  // in, where the verify may have found blocks to repair: it leaves the in-sync set owing the
  // window, so that its resync copies it. (One that went out meanwhile owes what it missed already.)
  const owing = new Owing(device, 'it failed during a verify, before the blocks it had to repair were rewritten');
  const failed = (node: string, windowBytes: number, why: DropReason) => {
    if (why === 'failed') owing.owe(node, rangeOf(windowBytes, Math.min(WINDOW_BYTES, sizeBytes - windowBytes)));
  };
  return owing.around(async () => (await verifyWindows(device, self, windows, onProgress, failed, stop)).verified);
}

/**
 * Makes the copies in sync equal to this primary's (self) in `regions`, where a former primary's
 * activity log says its writes in flight when it stopped may have reached some copies and not
 * others: compared by checksum first, then the windows where a copy differs are read and repaired.
 * A copy in sync at the start that is not verified to the end (it fails, or goes out, meanwhile)
 * may still differ there: it leaves the in-sync set owing the regions (as soon as it is dropped),
 * so that its resync copies them. Rejects if such a copy could not be taken out.
 */
export async function equalizeRegions(device: ReplicatedDevice, self: string, regions: DirtyMap): Promise<ReplicasVerified> {
  const inStep = device.status().filter((r) => r.state === 'in-sync').map((r) => r.id);
  const owing = new Owing(device, 'it could not be made equal to the primary where a former primary had writes in flight');
  const owe = (node: string) => owing.owe(node, regions);
  return owing.around(async () => {
    const unequal = new DirtyMap();
    for (const node of inStep) unequal.merge((await device.unequalBlocks(node, regions)).unequal);
    const windows = new Set<number>();
    for (const run of unequal.runs()) {
      const end = Math.min(device.sizeBytes, run.offsetBytes + run.lengthBytes);
      for (let at = run.offsetBytes - (run.offsetBytes % WINDOW_BYTES); at < end; at += WINDOW_BYTES) windows.add(at);
    }
    const { verified, complete } = await verifyWindows(device, self, [...windows].sort((a, b) => a - b), undefined, owe);
    for (const node of inStep) if (!complete.includes(node)) owe(node);
    return verified;
  });
}

/** Takes copies out of the in-sync set owing regions, each once; around() rejects if one could not be taken out. */
class Owing {
  private readonly owed = new Map<string, Promise<void>>();

  constructor(
    private readonly device: ReplicatedDevice,
    private readonly reason: string,
  ) {}

  owe(node: string, regions: DirtyMap): void {
    if (this.owed.has(node)) return;
    const owing = this.device.owes(node, regions, this.reason);
    owing.catch(() => undefined); // awaited by around(), once the verify has ended: not an unhandled rejection meanwhile
    this.owed.set(node, owing);
  }

  /** Runs fn, then waits for every copy it owed to be taken out; fn's own failure wins over theirs. */
  async around<T>(fn: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      await Promise.allSettled(this.owed.values());
      throw err;
    }
    await Promise.all(this.owed.values());
    return result;
  }
}

function rangeOf(offsetBytes: number, lengthBytes: number): DirtyMap {
  const map = new DirtyMap();
  map.mark(offsetBytes, lengthBytes);
  return map;
}

/**
 * Verifies the windows starting at `windows` (ascending, WINDOW_BYTES apart or more). complete: the
 * copies verified over every window; onDropped hears of each copy in sync at the start as soon as it
 * is not (it failed, or went out), with the start of the window it was dropped in and why.
 */
async function verifyWindows(
  device: ReplicatedDevice,
  self: string,
  windows: number[],
  onProgress?: (doneBlocks: number, totalBlocks: number) => void,
  onDropped?: (node: string, windowBytes: number, why: DropReason) => void,
  stop?: AbortSignal,
): Promise<{ verified: ReplicasVerified; complete: string[] }> {
  const sizeBytes = device.sizeBytes;
  const totalBlocks = windows.reduce((sum, at) => sum + Math.ceil(Math.min(WINDOW_BYTES, sizeBytes - at) / BLOCK_BYTES), 0);
  let doneBlocks = 0;
  const results = new Map([[self, emptyResult(self)]]);
  const skipped = new Map<string, string>();
  for (const replica of device.status()) {
    if (replica.state === 'in-sync') results.set(replica.id, emptyResult(replica.id));
    else skipped.set(replica.id, `it is ${replica.state}: a resync brings it in sync, not a verify`);
  }
  let windowAt = 0;
  const drop = (node: string, reason: DropReason, why: string) => {
    if (skipped.has(node)) return;
    skipped.set(node, why);
    onDropped?.(node, windowAt, reason);
  };
  const badBlockOffsets: number[] = [];
  for (const at of windows) {
    // Stopped between windows: what was repaired stays repaired, the rest was not compared (nothing owed).
    if (stop?.aborted) throw cancelled(`the verify was cancelled by its caller after ${doneBlocks} of ${totalBlocks} blocks (what it repaired meanwhile stays repaired)`);
    windowAt = at;
    const lengthBytes = Math.min(WINDOW_BYTES, sizeBytes - at);
    await device.exclusively(at, lengthBytes, async (local, peers) => {
      const compared = [...results.keys()].filter((node) => node !== self && !skipped.has(node));
      for (const node of compared) if (!peers.some((p) => p.id === node)) drop(node, 'out', 'it went out of sync during the verify');
      const copies = [localCopy(local, results.get(self) as ReplicaVerifyResult)];
      for (const peer of peers) if (compared.includes(peer.id)) copies.push(remoteCopy(peer, results.get(peer.id) as ReplicaVerifyResult));
      badBlockOffsets.push(...(await verifyWindow(copies, at, lengthBytes, drop)));
    });
    doneBlocks += Math.ceil(lengthBytes / BLOCK_BYTES);
    onProgress?.(doneBlocks, totalBlocks);
  }
  return {
    verified: {
      checkedBlocks: totalBlocks,
      badBlockOffsets,
      replicas: [...results.values()],
      skippedReplicas: [...skipped].map(([node, reason]) => ({ node, reason })),
    },
    complete: [...results.keys()].filter((node) => node !== self && !skipped.has(node)),
  };
}

/**
 * Reads the window from every copy, then rewrites what differs from the first copy that reads good
 * (the primary's, unless its block fails its checksum). Resolves with the offsets of the blocks no
 * copy reads good.
 */
async function verifyWindow(copies: Copy[], offsetBytes: number, lengthBytes: number, drop: (node: string, reason: DropReason, why: string) => void): Promise<number[]> {
  const failed = (copy: Copy) => (err: unknown) => {
    if (!copy.remote || isFenced(err)) throw err;
    drop(copy.result.node, 'failed', `it failed during the verify: ${(err as Error).message}`);
    return undefined;
  };
  const read = await Promise.all(copies.map((copy) => readCopy(copy, offsetBytes, lengthBytes).catch(failed(copy))));
  const contents = read.filter((c): c is Content => c !== undefined);
  const repairs = new Map<Copy, Repair[]>(contents.map((c) => [c.copy, []]));
  const unreadable: number[] = [];
  for (let start = 0, i = 0; start < lengthBytes; start += BLOCK_BYTES, i++) {
    const end = Math.min(lengthBytes, start + BLOCK_BYTES);
    const good = contents.find((c) => !c.bad.has(i));
    for (const c of contents) c.copy.result.comparedBlocks++;
    if (!good) {
      unreadable.push(offsetBytes + start);
      continue;
    }
    const block = good.data.subarray(start, end);
    for (const c of contents) {
      const kind = c.bad.has(i) ? 'checksum' : block.equals(c.data.subarray(start, end)) ? undefined : 'mismatch';
      if (kind) (repairs.get(c.copy) as Repair[]).push({ offsetBytes: offsetBytes + start, data: block, kind });
    }
  }
  // Every rewrite ends before the window's lock is let go, even when one of them fails.
  const outcomes = await Promise.allSettled([...repairs].map(([copy, list]) => rewrite(copy, list).catch(failed(copy))));
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failure) throw failure.reason;
  return unreadable;
}

/** The window's content; read again block by block if a block in it fails its checksum, to tell which. */
async function readCopy(copy: Copy, offsetBytes: number, lengthBytes: number): Promise<Content> {
  try {
    return { copy, data: await copy.read(offsetBytes, lengthBytes), bad: new Set() };
  } catch (err) {
    if (!copy.isBadRead(err)) throw err;
  }
  const data = Buffer.alloc(lengthBytes);
  const bad = new Set<number>();
  const starts = Array.from({ length: Math.ceil(lengthBytes / BLOCK_BYTES) }, (_, i) => i * BLOCK_BYTES);
  await Promise.all(
    starts.map(async (start, i) => {
      try {
        (await copy.read(offsetBytes + start, Math.min(BLOCK_BYTES, lengthBytes - start))).copy(data, start);
      } catch (err) {
        if (!copy.isBadRead(err)) throw err;
        bad.add(i);
      }
    }),
  );
  return { copy, data, bad };
}

/** Writes a copy's repairs, adjacent blocks as one write, and counts them once written. */
async function rewrite(copy: Copy, repairs: Repair[]): Promise<void> {
  const runs: Repair[][] = [];
  for (const repair of repairs) {
    const last = runs.at(-1)?.at(-1);
    if (last && last.offsetBytes + last.data.length === repair.offsetBytes) (runs.at(-1) as Repair[]).push(repair);
    else runs.push([repair]);
  }
  await Promise.all(runs.map((run) => copy.write(run[0].offsetBytes, Buffer.concat(run.map((r) => r.data)))));
  for (const repair of repairs) {
    if (repair.kind === 'checksum') copy.result.checksumRepairedBlocks++;
    else copy.result.mismatchRepairedBlocks++;
  }
}

function localCopy(local: VolumeLayer, result: ReplicaVerifyResult): Copy {
  return {
    result,
    remote: false,
    read: (offsetBytes, lengthBytes) => local.read(offsetBytes, lengthBytes),
    write: (offsetBytes, data) => (isAllZero(data) ? local.writeZeroes(offsetBytes, data.length, { fua: true, noHole: false }) : local.write(offsetBytes, data, true)),
    isBadRead: (err) => err instanceof ChecksumError,
  };
}

function remoteCopy(peer: InSyncPeer, result: ReplicaVerifyResult): Copy {
  const connection = peer.connection;
  return {
    result,
    remote: true,
    read: (offsetBytes, lengthBytes) => connection.read(offsetBytes, lengthBytes),
    write: (offsetBytes, data) => (isAllZero(data) ? connection.writeZeroes(offsetBytes, data.length, true, false) : connection.write(offsetBytes, data, true)),
    // The replica answered EIO (its checksum failed), as opposed to the connection failing.
    isBadRead: (err) => err instanceof IoError && err.errno === 'EIO' && !(err instanceof NbdConnectionError),
  };
}

function emptyResult(node: string): ReplicaVerifyResult {
  return { node, comparedBlocks: 0, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 0 };
}
