// Filesystems on attached volumes: format only what is blank, mount, bind-mount (read-only when asked),
// unmount, grow after a resize and report usage. Each step is safe to repeat, as CSI retries them.

import { mkdir, open, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, WeftError } from '../../../fabric/errors';
import { deviceSizeBytes } from './devices';
import { probeTool, runTool, ToolError } from './exec';

export type FsType = 'ext4' | 'xfs';

export interface FilesystemStats {
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
  totalInodes: number;
  usedInodes: number;
  freeInodes: number;
}

const UNMOUNT_ATTEMPTS = 10;
const UNMOUNT_RETRY_MS = 200;
/** mkfs, fsck and resize of a large filesystem take a while. */
const SLOW_TOOL_TIMEOUT_MS = 300_000;
/**
 * e2fsck of a large filesystem read over the network, and an offline resize2fs of it, may take long:
 * cut short, they would start over at every retry of the stage, and the volume never be staged.
 */
const FSCK_TIMEOUT_MS = 3_600_000;

/**
 * Formats device with fsType if it holds nothing; never formats over anything. Blank means: blkid
 * finds no signature, and the start of the device (where ext4, xfs and partition tables keep
 * theirs) reads as zeroes here. blkid's "nothing" is also its answer to a read that failed just then
 * (weftd or the primary away for longer than the attachment waits), however often it is asked.
 */
export async function formatIfBlank(device: string, fsType: FsType): Promise<void> {
  let signature = await probeSignature(device);
  if (signature === undefined && !(await startIsZero(device))) {
    signature = await probeSignature(device); // it reads now: its first "nothing" may have been a failed read
    if (signature === undefined) {
      throw failedPrecondition(
        `${device} is not blank (its first MiB holds data) but blkid finds no filesystem or partition table on it: refusing to format it (its data would be lost); zero its first MiB to have it formatted`,
      );
    }
  }
  if (signature === undefined) {
    await runTool(`mkfs.${fsType}`, fsType === 'ext4' ? ['-q', '-F', device] : ['-q', device], { timeoutMs: SLOW_TOOL_TIMEOUT_MS });
    return;
  }
  if (signature.TYPE === fsType) return;
  const found = signature.TYPE ? `a ${signature.TYPE} filesystem` : `a ${signature.PTTYPE ?? 'unknown'} partition table`;
  throw failedPrecondition(`${device} holds ${found}, not ${fsType}: refusing to format it (its data would be lost)`);
}

/** blkid's low-level probe (no cache): the signature's KEY=VALUE pairs, or undefined if there is none. */
async function probeSignature(device: string): Promise<Record<string, string> | undefined> {
  const args = ['--probe', '--output', 'export', device];
  const result = await probeTool('blkid', args);
  if (result.exitCode === 2) return undefined; // blkid: "no identifiable signature"
  if (result.exitCode !== 0) throw new ToolError('blkid', args, result);
  const pairs = result.stdout.split('\n').filter((line) => line.includes('='));
  return Object.fromEntries(pairs.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

/**
 * Whether the device's first MiB (all of a smaller device) reads as zeroes, read in a process of its
 * own (start-is-zero.ts says why). A read that fails throws; a device that reads nothing at all
 * (size 0) is refused.
 */
async function startIsZero(device: string): Promise<boolean> {
  const result = await probeTool(process.execPath, [path.join(__dirname, 'start-is-zero.js'), device], { timeoutMs: SLOW_TOOL_TIMEOUT_MS });
  // Not answered in time (the volume's primary away): the CO tries the stage again.
  if (result.exitCode === null) throw new WeftError('UNAVAILABLE', `the start of ${device} could not be read within ${SLOW_TOOL_TIMEOUT_MS / 1000} s`);
  if (result.exitCode !== 0) throw failedPrecondition(`cannot read the start of ${device}: ${result.stderr.trim()}`);
  return result.stdout.trim() === 'zero';
}

/** Mounts device at target (created if missing); a no-op if device is already mounted there. */
export async function mountDevice(device: string, target: string, fsType: FsType, options: string[]): Promise<void> {
  await mkdir(target, { recursive: true });
  const current = await mountSource(target);
  if (current === device) return;
  if (current !== undefined) throw failedPrecondition(`${target} is already a mount of ${current}, not of ${device}`);
  await runTool('mount', ['-t', fsType, ...(options.length ? ['-o', options.join(',')] : []), device, target]);
}

/**
 * Bind-mounts source (a directory, or a device file for block access) at target, which is created as
 * a directory or an empty file to match. A bind mount ignores "ro", so read-only needs a remount.
 * Already mounted: read-only as asked, or made so (a publication cut short between its bind and
 * its remount is finished); a read-only mount where read-write is asked is refused, and so is a mount
 * of anything but source.
 */
export async function bindMount(source: string, target: string, readOnly: boolean): Promise<void> {
  await createTargetLike(source, target);
  if (await isMountPoint(target)) {
    // A bind mount's target is its source's very file: anything else there is another mount.
    const [was, is] = await Promise.all([stat(source), stat(target)]);
    if (was.dev !== is.dev || was.ino !== is.ino) throw failedPrecondition(`${target} is already a mount of something else than ${source}`);
    const isReadOnly = await isReadOnlyMount(target);
    if (isReadOnly === readOnly) return;
    if (isReadOnly) throw failedPrecondition(`${target} is already mounted read-only, not read-write`);
  } else {
    await runTool('mount', ['--bind', source, target]);
  }
  if (!readOnly) return;
  try {
    await runTool('mount', ['-o', 'remount,bind,ro', target]);
  } catch (error) {
    await unmountEvenIfBusy(target); // never leave a writable mount where a read-only one was asked for (the filesystem stays mounted below)
    throw error;
  }
}

async function createTargetLike(source: string, target: string): Promise<void> {
  if ((await stat(source)).isDirectory()) {
    await mkdir(target, { recursive: true });
    return;
  }
  await mkdir(path.dirname(target), { recursive: true });
  await (await open(target, 'a')).close();
}

/** Whether the mount at target is read-only (asked so, or remounted so by its filesystem after errors). */
export async function isReadOnlyMount(target: string): Promise<boolean> {
  const options = (await findmnt(['--mountpoint', target, '--output', 'OPTIONS'])) ?? '';
  return options.split(',').includes('ro');
}

/**
 * Unmounts target until nothing is mounted there (mounts may be stacked); nothing to do is fine. A
 * busy mount is retried for a while, then refused with FAILED_PRECONDITION (the caller retries):
 * never detached lazily, which would let a process still writing there lose its writes once the
 * device below is gone, while the caller is told that all went well.
 */
export async function unmount(target: string): Promise<void> {
  let refusal = '';
  for (let attempt = 0; attempt < UNMOUNT_ATTEMPTS; attempt++) {
    if (!(await isMountPoint(target))) return;
    const result = await probeTool('umount', [target]);
    if (result.exitCode === 0) continue;
    refusal = result.stderr.trim();
    await sleep(UNMOUNT_RETRY_MS);
  }
  if (!(await isMountPoint(target))) return;
  throw failedPrecondition(`${target} is still in use and was not unmounted (${refusal || 'umount failed'}): stop what uses it, then try again`);
}

/**
 * unmount(), but a mount still busy after the retries is detached lazily: only for a mount whose
 * writes reach weftd as they are made (nbdfuse's), so that none are held below it to be lost.
 */
export async function unmountEvenIfBusy(target: string): Promise<void> {
  try {
    await unmount(target);
  } catch {
    while (await isMountPoint(target)) await runTool('umount', ['--lazy', target]);
  }
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountSource(target)) !== undefined;
}

/** The source of the mount at target (e.g. /dev/loop3), or undefined if target is not a mount point. */
export async function mountSource(target: string): Promise<string | undefined> {
  return findmnt(['--mountpoint', target, '--output', 'SOURCE']);
}

/** Where device is mounted (its first mount point), or undefined if it is not mounted. */
export async function mountPointOf(device: string): Promise<string | undefined> {
  return findmnt(['--source', device, '--output', 'TARGET']);
}

/** Detaching a device that still holds a mounted filesystem would break or defer it: refuse. */
export async function assertNotMounted(device: string): Promise<void> {
  const mountPoint = await mountPointOf(device);
  if (mountPoint !== undefined) throw failedPrecondition(`${device} is still mounted at ${mountPoint}: unmount it before detaching`);
}

/** The last line findmnt prints (the top of stacked mounts), or undefined if it finds nothing. */
async function findmnt(args: string[]): Promise<string | undefined> {
  const fullArgs = ['--noheadings', ...args];
  const result = await probeTool('findmnt', fullArgs);
  if (result.exitCode === 1) return undefined;
  if (result.exitCode !== 0) throw new ToolError('findmnt', fullArgs, result);
  return result.stdout.trim().split('\n').pop()?.trim();
}

/**
 * Grows the filesystem on device to the device's size: online if it is mounted at mountPath, else
 * offline (ext4 only: xfs grows only while mounted). Online ext4 growth needs CAP_SYS_RESOURCE.
 */
export async function growFilesystem(device: string, mountPath: string, fsType: FsType): Promise<void> {
  const mounted = (await mountSource(mountPath)) === device;
  if (fsType === 'xfs') {
    if (!mounted) throw failedPrecondition(`xfs on ${device} grows only while mounted, and ${mountPath} is not its mount`);
    await runTool('xfs_growfs', ['-d', mountPath], { timeoutMs: SLOW_TOOL_TIMEOUT_MS });
  } else if (mounted) {
    await growMountedExt4(device);
  } else if ((await ext4SizeBytes(device)) < (await deviceSizeBytes(device))) {
    await checkExt4(device); // resize2fs insists on a fresh check before an offline resize
    await runTool('resize2fs', [device], { timeoutMs: FSCK_TIMEOUT_MS });
  }
}

async function growMountedExt4(device: string): Promise<void> {
  try {
    await runTool('resize2fs', [device], { timeoutMs: SLOW_TOOL_TIMEOUT_MS });
  } catch (error) {
    if (!(error instanceof ToolError && error.result.stderr.includes('Permission denied'))) throw error;
    throw failedPrecondition(
      `online growth of ext4 on ${device} was refused: it needs CAP_SYS_RESOURCE, which weftd lacks here; ` +
        'grow it while unmounted instead (unstage and stage the volume again)',
    );
  }
}

/**
 * Before a writable mount, as Kubernetes' mount-utils does: ext4 is checked if it is not clean
 * (marked with errors, as after the I/O errors of a volume out of reach) and fixed where that is
 * safe (e2fsck -p); mounted as it was, its damage would grow with every write. Only errors it may
 * not fix unattended (exit 4) fail; a check that cannot run to its end (exit 8 and above, or past an
 * hour) is answered with why, and the mount goes on, as with mount-utils. xfs has no such check: its
 * log is replayed at mount, and xfs_repair is for an administrator.
 */
export async function checkFilesystem(device: string, fsType: FsType): Promise<string | undefined> {
  if (fsType !== 'ext4') return undefined;
  const args = ['-p', device];
  const result = await probeTool('e2fsck', args, { timeoutMs: FSCK_TIMEOUT_MS });
  if (result.exitCode === 4) {
    throw failedPrecondition(`ext4 on ${device} has errors that e2fsck -p may not fix unattended: repair it by hand (e2fsck ${device}) before it is mounted: ${result.stdout.trim()}`);
  }
  if (result.exitCode !== null && result.exitCode <= 2) return undefined;
  return `e2fsck ${args.join(' ')} did not finish its check (${result.exitCode === null ? 'stopped' : `exit ${result.exitCode}`}): ${result.stderr.trim()}`;
}

/** e2fsck -f -p: exit 0 (clean) or 1 (fixed) is fine; anything else is not. */
async function checkExt4(device: string): Promise<void> {
  const args = ['-f', '-p', device];
  const result = await probeTool('e2fsck', args, { timeoutMs: FSCK_TIMEOUT_MS });
  if (result.exitCode !== 0 && result.exitCode !== 1) throw new ToolError('e2fsck', args, result);
}

async function ext4SizeBytes(device: string): Promise<number> {
  const header = await runTool('dumpe2fs', ['-h', device]);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(header)?.[1]);
  return field('Block count') * field('Block size');
}

export async function filesystemStats(target: string): Promise<FilesystemStats> {
  const stats = await statfs(target);
  return {
    totalBytes: stats.blocks * stats.bsize,
    usedBytes: (stats.blocks - stats.bfree) * stats.bsize,
    availableBytes: stats.bavail * stats.bsize,
    totalInodes: stats.files,
    usedInodes: stats.files - stats.ffree,
    freeInodes: stats.ffree,
  };
}
