// Attach without kernel NBD: nbdfuse shows the volume as the file WORKDIR/fuse/nbd, and a loop device
// (direct I/O) makes that file a block device. nbdfuse talks to weftd through the reconnecting relay.
//
// Lifetime: nbdfuse runs detached, in its own session, with the relay as its subprocess, so that both
// outlive a weftd restart (the filesystem on the loop device stays mounted all along); only detach()
// stops them. What they cannot outlive is their cgroup being killed: a systemd unit needs
// KillMode=process, and a container restart takes them down with it.
//
// Size: nbdfuse fixes its file's size when it connects, so it connects to the volume's growable
// export (VOL~growable, a window as large as a volume can be; see fabric/nbd-exports.ts), and the
// loop device's size limit shows exactly the volume. Growing raises the limit: online, no reconnect.

import fs from 'node:fs';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../../../fabric/errors';
import { GROWABLE_SUFFIX } from '../../../fabric/nbd-exports';
import { MAX_ATTACHMENTS, workDirOf, type AttachRequest, type Attacher, type Attachment, type MethodSupport } from './attacher';
import { attachLoop, detachLoop, diskSequence, loopsBackedBy, setLoopSizeLimit } from './devices';
import { missingCommands } from './exec';
import { assertNotMounted, isMountPoint, unmountEvenIfBusy } from './mount';
import { childrenNamed, isHelperAlive, readPidFile, startDaemon, stopHelper, waitForHelperExit, type HelperIdentity } from './processes';
import { relaySubprocessArgs } from './relay';
import { attachInWorkDir, clearWorkDir, readRecord, removeRecord, type WorkDirSteps } from './work-dir';

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
  return { name: 'nbdfuse', marker: layout(workDir).fuseDir };
}

/** nbdfuse's arguments: single-threaded (-s: about 20 times the IOPS of its default), over the relay. */
export function nbdfuseArgs(fuseDir: string, pidFile: string, nbdUri: string): string[] {
  return ['-s', '--pidfile', pidFile, fuseDir, ...relaySubprocessArgs(nbdUri)];
}

export class NbdFuseLoopAttacher implements Attacher, WorkDirSteps {
  readonly method = 'nbdfuse-loop' as const;
  private readonly options: NbdFuseLoopOptions;

  constructor(options: Partial<NbdFuseLoopOptions> = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
  }

  attach(request: AttachRequest, workDir: string): Promise<Attachment> {
    return attachInWorkDir(this, request, workDir);
  }

  detach(attachment: Attachment): Promise<void> {
    return this.teardown(workDirOf(attachment));
  }

  clear(workDir: string): Promise<void> {
    return clearWorkDir(this, workDir);
  }

  async reattach(attachment: Attachment, sizeBytes: number): Promise<Attachment> {
    await this.detach(attachment);
    return this.attach({ volume: attachment.volume, nbdUri: attachment.nbdUri, sizeBytes }, workDirOf(attachment));
  }

  async growOnline(attachment: Attachment, sizeBytes: number): Promise<boolean> {
    await setLoopSizeLimit(attachment.devicePath, sizeBytes);
    return true;
  }

  /** Loop devices are made as they are needed (loop-control), so only weftd's own bound applies. */
  async maxAttachments(): Promise<number> {
    return MAX_ATTACHMENTS;
  }

  /** nbdfuse and its relay run, nbdfuse's mount is there, and the loop device still reads its file. */
  async isHealthy(attachment: Attachment): Promise<boolean> {
    const workDir = workDirOf(attachment);
    const { fuseDir, backingFile } = layout(workDir);
    const nbdfusePid = Number(attachment.details.nbdfusePid);
    const [nbdfuse, relays, mounted, loops] = await Promise.all([
      isHelperAlive(nbdfusePid, nbdfuseIdentity(workDir)),
      childrenNamed(nbdfusePid, 'nbdkit'),
      isMountPoint(fuseDir),
      loopsBackedBy(backingFile),
    ]);
    return nbdfuse && relays.length === 1 && mounted && loops.includes(attachment.devicePath);
  }

  async connect({ volume, nbdUri, sizeBytes }: AttachRequest, workDir: string): Promise<Attachment> {
    const { fuseDir, backingFile, pidFile, logFile } = layout(workDir);
    await mkdir(fuseDir, { recursive: true });
    const nbdfusePid = await startDaemon({
      ...nbdfuseIdentity(workDir),
      args: nbdfuseArgs(fuseDir, pidFile, `${nbdUri}${GROWABLE_SUFFIX}`),
      cwd: workDir,
      pidFile,
      logFile,
      readyTimeoutMs: this.options.readyTimeoutMs,
    });
    await this.waitForFile(backingFile);
    const devicePath = await attachLoop(backingFile, sizeBytes);
    const loopSequence = await diskSequence(devicePath);
    return {
      volume,
      method: this.method,
      devicePath,
      nbdUri,
      details: { workDir, fuseDir, backingFile, nbdfusePid: String(nbdfusePid), ...(loopSequence ? { loopSequence } : {}) },
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

  /** Undoes connect() in reverse, each step only if its part exists: loop, FUSE mount, nbdfuse (and relay). */
  async teardown(workDir: string): Promise<void> {
    const { fuseDir, backingFile, pidFile, logFile } = layout(workDir);
    // Its loop device found by its file's path; or, once that path is gone (the FUSE mount ended
    // with a container's restart: the kernel shows the file as "/nbd" then), as the device recorded,
    // if it is still set up as it was then (the same disk sequence number).
    const recorded = await readRecord(workDir);
    const sequence = recorded?.details.loopSequence;
    const stillOurs = recorded && sequence !== undefined && (await diskSequence(recorded.devicePath)) === sequence;
    const loops = [...new Set([...(await loopsBackedBy(backingFile)), ...(stillOurs ? [recorded.devicePath] : [])])];
    for (const device of loops) {
      await assertNotMounted(device);
      await detachLoop(device);
    }
    await removeRecord(workDir); // only now: it alone still finds the loop device of a FUSE mount gone from view
    await unmountEvenIfBusy(fuseDir); // nbdfuse writes through: it holds no writes to lose
    await this.stopNbdfuse(workDir, pidFile);
    await rmdir(fuseDir).catch(unlessMissing);
    for (const file of [pidFile, logFile]) await rm(file, { force: true });
  }

  /** nbdfuse exits by itself once its mount is gone, and the relay with it; if it does not, it is stopped. */
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
