// Attach without kernel NBD: nbdfuse shows the volume as the file WORKDIR/fuse/nbd, and a loop device
// (direct I/O) makes that file a block device. nbdfuse talks to weftd through the reconnecting relay.
//
// Lifetime: the relay and nbdfuse run detached, in their own session, so that they outlive a weftd
// restart (the filesystem on the loop device stays mounted all along); only detach() stops them. What
// they cannot outlive is their cgroup being killed: a systemd unit needs KillMode=process, and a
// container restart takes them down with it.
//
// Size: nbdfuse fixes the file's size when it connects, and a loop device cannot change its backing
// file while writable, so a device sees a resized volume only after reattach() (unmounted meanwhile).

import fs from 'node:fs';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, WeftError } from '../../../fabric/errors';
import { workDirOf, type Attacher, type Attachment, type MethodSupport } from './attacher';
import { attachLoop, detachLoop, loopsBackedBy } from './devices';
import { missingCommands } from './exec';
import { isMountPoint, mountPointOf, unmount } from './mount';
import { isHelperAlive, readPidFile, startDaemon, stopHelper, waitForHelperExit, type HelperIdentity } from './processes';
import { RELAY_SOCKET, relayIdentity, startRelay, stopRelay } from './relay';
import { attachInWorkDir, removeRecord, type WorkDirSteps } from './work-dir';

const FUSE_DIR = 'fuse';
const NBDFUSE_PID_FILE = 'nbdfuse.pid';
const NBDFUSE_LOG_FILE = 'nbdfuse.log';
/** nbdfuse's default file name inside its mount point. */
const BACKING_FILE = 'nbd';
const POLL_MS = 25;

export interface NbdFuseLoopOptions {
  /** How long the relay and nbdfuse may take to be ready. */
  readyTimeoutMs: number;
  /** How long nbdfuse may take to exit once its FUSE mount is gone. */
  exitTimeoutMs: number;
}

const DEFAULT_OPTIONS: NbdFuseLoopOptions = { readyTimeoutMs: 15_000, exitTimeoutMs: 10_000 };

/** The tools this method needs; it works if they are all installed and /dev/fuse exists. */
export async function nbdFuseLoopSupport(): Promise<MethodSupport> {
  const missing = await missingCommands(['nbdkit', 'nbdfuse', 'losetup', 'findmnt', 'umount']);
  if (missing.length) return { usable: false, reason: `not installed: ${missing.join(', ')}` };
  if (!fs.existsSync('/dev/fuse')) return { usable: false, reason: 'no /dev/fuse' };
  return { usable: true, reason: 'nbdfuse, nbdkit and loop devices are available' };
}

/** Where everything of one attachment lives in its work dir. */
function layout(workDir: string) {
  const fuseDir = path.join(workDir, FUSE_DIR);
  return {
    fuseDir,
    backingFile: path.join(fuseDir, BACKING_FILE),
    pidFile: path.join(workDir, NBDFUSE_PID_FILE),
    logFile: path.join(workDir, NBDFUSE_LOG_FILE),
  };
}

function nbdfuseIdentity(workDir: string): HelperIdentity {
  return { name: 'nbdfuse', cwd: workDir };
}

/** nbdfuse's arguments: single-threaded (-s: about 20 times the IOPS of its default), over the relay. */
export function nbdfuseArgs(fuseDir: string): string[] {
  return ['-s', '--pidfile', NBDFUSE_PID_FILE, fuseDir, '--unix', RELAY_SOCKET];
}

export class NbdFuseLoopAttacher implements Attacher, WorkDirSteps {
  readonly method = 'nbdfuse-loop' as const;
  private readonly options: NbdFuseLoopOptions;

  constructor(options: Partial<NbdFuseLoopOptions> = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
  }

  attach(volume: string, nbdUri: string, workDir: string): Promise<Attachment> {
    return attachInWorkDir(this, volume, nbdUri, workDir);
  }

  detach(attachment: Attachment): Promise<void> {
    return this.teardown(workDirOf(attachment));
  }

  async reattach(attachment: Attachment): Promise<Attachment> {
    await this.detach(attachment);
    return this.attach(attachment.volume, attachment.nbdUri, workDirOf(attachment));
  }

  async isHealthy(attachment: Attachment): Promise<boolean> {
    const workDir = workDirOf(attachment);
    const { fuseDir, backingFile } = layout(workDir);
    const [relay, nbdfuse, mounted, loops] = await Promise.all([
      isHelperAlive(Number(attachment.details.relayPid), relayIdentity(workDir)),
      isHelperAlive(Number(attachment.details.nbdfusePid), nbdfuseIdentity(workDir)),
      isMountPoint(fuseDir),
      loopsBackedBy(backingFile),
    ]);
    return relay && nbdfuse && mounted && loops.includes(attachment.devicePath);
  }

  async connect(volume: string, nbdUri: string, workDir: string): Promise<Attachment> {
    const { fuseDir, backingFile, pidFile, logFile } = layout(workDir);
    await mkdir(fuseDir, { recursive: true });
    const relayPid = await startRelay(workDir, nbdUri, this.options.readyTimeoutMs);
    const nbdfusePid = await startDaemon({
      ...nbdfuseIdentity(workDir),
      args: nbdfuseArgs(fuseDir),
      pidFile,
      logFile,
      readyTimeoutMs: this.options.readyTimeoutMs,
    });
    await this.waitForFile(backingFile);
    const devicePath = await attachLoop(backingFile);
    return {
      volume,
      method: this.method,
      devicePath,
      nbdUri,
      details: { workDir, fuseDir, backingFile, relayPid: String(relayPid), nbdfusePid: String(nbdfusePid) },
    };
  }

  /** The pid file says nbdfuse serves; the file should be there already, but check before losetup. */
  private async waitForFile(file: string): Promise<void> {
    const deadline = Date.now() + this.options.readyTimeoutMs;
    while (!(await stat(file).then((s) => s.isFile(), () => false))) {
      if (Date.now() >= deadline) throw new WeftError('UNAVAILABLE', `nbdfuse is running but ${file} did not appear`);
      await sleep(POLL_MS);
    }
  }

  /** Undoes connect() in reverse, each step only if its part exists: loop, FUSE mount, nbdfuse, relay. */
  async teardown(workDir: string): Promise<void> {
    const { fuseDir, backingFile, pidFile, logFile } = layout(workDir);
    await removeRecord(workDir);
    for (const device of await loopsBackedBy(backingFile)) await detachUnmountedLoop(device);
    await unmount(fuseDir);
    await this.stopNbdfuse(workDir, pidFile);
    await stopRelay(workDir);
    await rmdir(fuseDir).catch(unlessMissing);
    for (const file of [pidFile, logFile]) await rm(file, { force: true });
  }

  /** nbdfuse exits by itself once its mount is gone; if it does not, it is stopped. */
  private async stopNbdfuse(workDir: string, pidFile: string): Promise<void> {
    const pid = await readPidFile(pidFile);
    if (pid === undefined) return;
    const identity = nbdfuseIdentity(workDir);
    if (!(await waitForHelperExit(pid, identity, this.options.exitTimeoutMs))) await stopHelper(pid, identity, this.options.exitTimeoutMs);
  }
}

function unlessMissing(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error;
}

/** Detaching a loop device that still holds a mounted filesystem would only defer it: refuse. */
async function detachUnmountedLoop(device: string): Promise<void> {
  const mountPoint = await mountPointOf(device);
  if (mountPoint !== undefined) throw failedPrecondition(`${device} is still mounted at ${mountPoint}: unmount it before detaching`);
  await detachLoop(device);
}
