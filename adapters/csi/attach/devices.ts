// Block devices on this node: loop devices over a file (set up with direct I/O and a size limit,
// found again by their backing file or disk sequence number, grown, detached) and the size of any block device.

import { readdir, readFile, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from './exec';

/** How long a size change may take: the kernel first writes the device's dirty pages back. */
const LOOP_SIZE_TIMEOUT_MS = 10 * 60_000;

interface LosetupList {
  loopdevices?: { name: string; 'back-file': string | null }[];
}

/**
 * A new loop device over the first sizeBytes of file; direct I/O avoids caching every block twice
 * (loop and file).
 */
export async function attachLoop(file: string, sizeBytes: number): Promise<string> {
  return (await runTool('losetup', ['--find', '--show', '--direct-io=on', '--sizelimit', String(sizeBytes), file])).trim();
}

/** A read-only loop device over a block device: writes through it fail (EROFS/EPERM), whatever opens it. */
export async function attachReadOnlyLoop(device: string): Promise<string> {
  return (await runTool('losetup', ['--find', '--show', '--read-only', device])).trim();
}

/** Has a loop device without a size limit take its backing device's size again (after it grew). */
export async function refreshLoopCapacity(device: string): Promise<void> {
  await runTool('losetup', ['--set-capacity', device]);
}

/** Sets how much of its file a bound loop device shows; allowed while it is mounted (online growth). */
export async function setLoopSizeLimit(device: string, sizeBytes: number): Promise<void> {
  // Off the event loop (see there), and given the time a large write-back takes: killed, it would be
  // reported failed though the size was set.
  await runTool(process.execPath, [path.join(__dirname, 'set-loop-size.js'), device, String(sizeBytes)], { timeoutMs: LOOP_SIZE_TIMEOUT_MS });
}

/** The loop devices whose backing file is this path (normally one, or none). */
export async function loopsBackedBy(file: string): Promise<string[]> {
  const output = await runTool('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  const list = (output.trim() ? JSON.parse(output) : {}) as LosetupList;
  return (list.loopdevices ?? []).filter((loop) => loop['back-file'] === file).map((loop) => loop.name);
}

/**
 * The kernel's disk sequence number of a block device (Linux 5.15 on), undefined where it has none:
 * a loop device gets a new one each time it is set up, so it tells this use of it from a later one.
 */
export async function diskSequence(device: string): Promise<string | undefined> {
  return (await readFile(`/sys/block/${path.basename(device)}/diskseq`, 'utf8').catch(() => undefined))?.trim();
}

export async function detachLoop(device: string): Promise<void> {
  await runTool('losetup', ['--detach', device]);
}

export async function deviceSizeBytes(device: string): Promise<number> {
  return Number((await runTool('blockdev', ['--getsize64', device])).trim());
}

/** What may hold an attachment's own device open for good (nbd-client keeps /dev/nbdX open): no user of it. */
const ATTACH_HELPERS = new Set(['nbd-client', 'nbdkit', 'nbdfuse']);

/**
 * The processes that have the block device open by its path, found in /proc, but for the
 * attachment's own helpers: none if the device is gone. Each open file is read as the link's text
 * (readlink), never stat'ed: a stat follows the link into the file's filesystem, and a hung NFS or
 * FUSE mount would hold it, and with it a thread of the pool the data path writes through. One
 * process at a time, for the same reason. Processes that vanish meanwhile are skipped.
 */
export async function processesUsing(device: string): Promise<number[]> {
  const target = await realpath(device).catch(() => undefined);
  if (target === undefined) return [];
  const users: number[] = [];
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number)) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    const opened = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
    if (!opened.includes(target) && !opened.includes(device)) continue;
    const name = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (!ATTACH_HELPERS.has(name)) users.push(pid);
  }
  return users;
}
