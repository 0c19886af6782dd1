// Attach with the kernel's NBD driver: nbd-client connects a free /dev/nbdX to the reconnecting relay
// (a daemonized nbdkit) and exits, the kernel keeping the socket. Only where the nbd module exists.
//
// Not testable on machines without the nbd module (such as the CI machines): only the arguments it
// passes to nbd-client are unit-tested. nbd-client's flags are those of its manual page (nbd 3.24):
// `nbd-client -unix PATH DEVICE -N NAME -b BYTES -t SECONDS`, `-c DEVICE` (exit 0 and a pid when
// connected, 1 when not), `-d DEVICE`.

import fs from 'node:fs';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FORWARD_DURABLE_TIMEOUT_MS } from '../../../fabric/cluster/volume-controller';
import { WeftError } from '../../../fabric/errors';
import { MAX_ATTACHMENTS, workDirOf, type AttachRequest, type Attacher, type Attachment, type MethodSupport } from './attacher';
import { commandExists, missingCommands, probeTool, runTool } from './exec';
import { assertNotMounted } from './mount';
import { isHelperAlive } from './processes';
import { RECONNECT_WINDOW_S, RELAY_SOCKET, relayDaemonIdentity, startRelayDaemon, stopRelayDaemon } from './relay';
import { attachInWorkDir, clearWorkDir, removeRecord, type WorkDirSteps } from './work-dir';

/** Written before nbd-client runs, so that a crash right after it still leaves the device findable. */
const DEVICE_FILE = 'nbd-device';
const BLOCK_SIZE_BYTES = 4096;
/**
 * The kernel fails a request after this long (the filesystem then sees EIO): longer than weftd may
 * take for a FLUSH or FUA write forwarded to a primary whose copies' disks are slow, plus the time
 * the relay waits for weftd to come back (it was 60 s, below the first alone).
 */
const REQUEST_TIMEOUT_S = Math.ceil(FORWARD_DURABLE_TIMEOUT_MS / 1000) + 2 * RECONNECT_WINDOW_S;
const READY_TIMEOUT_MS = 15_000;

export interface NbdClientConnect {
  /** The relay's unix socket, relative to nbd-client's working directory (the work dir). */
  socket: string;
  device: string;
  exportName: string;
  blockSizeBytes: number;
  timeoutS: number;
}

/** nbd-client's arguments to connect device to the relay. */
export function nbdClientConnectArgs(connect: NbdClientConnect): string[] {
  return [
    '-unix', connect.socket, connect.device,
    '-N', connect.exportName,
    '-b', String(connect.blockSizeBytes),
    '-t', String(connect.timeoutS),
  ];
}

/** Usable when nbd-client and nbdkit are installed and the nbd module is loaded or loads. */
export async function kernelNbdSupport(sysBlock = '/sys/block'): Promise<MethodSupport> {
  const missing = await missingCommands(['nbd-client', 'nbdkit']);
  if (missing.length) return { usable: false, reason: `not installed: ${missing.join(', ')}` };
  let loaded = 'the nbd module is loaded';
  if (!fs.existsSync('/sys/module/nbd')) {
    if (!(await commandExists('modprobe'))) return { usable: false, reason: 'no nbd module (/sys/module/nbd) and no modprobe to load it' };
    const modprobe = await probeTool('modprobe', ['nbd']);
    if (modprobe.exitCode !== 0) return { usable: false, reason: `no nbd module: modprobe nbd: ${modprobe.stderr.trim() || `exit ${modprobe.exitCode}`}` };
    loaded = 'modprobe nbd loaded the nbd module';
  }
  // Loaded with nbds_max=0 it has no device to connect: every attach would fail.
  const devices = (await nbdDeviceNames(sysBlock)).length;
  if (devices === 0) return { usable: false, reason: `${loaded} with no devices (nbds_max=0)` };
  return { usable: true, reason: `${loaded} with ${devices} devices, and nbd-client is installed` };
}

export class KernelNbdAttacher implements Attacher, WorkDirSteps {
  readonly method = 'kernel-nbd' as const;

  /** sysBlock: where the kernel lists block devices (a test's own directory in tests). */
  constructor(private readonly sysBlock = '/sys/block') {}
  /** Attaches pick a free device, so they run one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  attach(request: AttachRequest, workDir: string): Promise<Attachment> {
    const attached = this.queue.then(() => attachInWorkDir(this, request, workDir));
    this.queue = attached.catch(() => undefined);
    return attached;
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

  /** The kernel device has the size the export had when nbd-client connected. */
  async growOnline(): Promise<boolean> {
    return false;
  }

  /**
   * One nbd device per attachment, and the module makes nbds_max of them when it loads (16 unless
   * set): a scheduler told more would place volumes here that cannot attach.
   */
  async maxAttachments(): Promise<number> {
    return Math.min(MAX_ATTACHMENTS, (await nbdDeviceNames(this.sysBlock)).length);
  }

  async isHealthy(attachment: Attachment): Promise<boolean> {
    const workDir = workDirOf(attachment);
    const relay = await isHelperAlive(Number(attachment.details.relayPid), relayDaemonIdentity(workDir));
    return relay && (await isConnected(attachment.devicePath));
  }

  async connect({ volume, nbdUri }: AttachRequest, workDir: string): Promise<Attachment> {
    const relayPid = await startRelayDaemon(workDir, nbdUri, READY_TIMEOUT_MS);
    const device = await freeNbdDevice(this.sysBlock);
    await writeFile(path.join(workDir, DEVICE_FILE), device);
    const args = nbdClientConnectArgs({ socket: RELAY_SOCKET, device, exportName: volume, blockSizeBytes: BLOCK_SIZE_BYTES, timeoutS: REQUEST_TIMEOUT_S });
    await runTool('nbd-client', args, { cwd: workDir });
    return { volume, method: this.method, devicePath: device, nbdUri, details: { workDir, relayPid: String(relayPid) } };
  }

  async teardown(workDir: string): Promise<void> {
    await removeRecord(workDir);
    const deviceFile = path.join(workDir, DEVICE_FILE);
    const device = (await readFile(deviceFile, 'utf8').catch(() => '')).trim();
    if (device && (await isConnected(device))) {
      await assertNotMounted(device);
      await runTool('nbd-client', ['-d', device]);
    }
    // At once: the device is free for another volume now, and a teardown tried again (the relay's
    // stop failed) must not disconnect that one.
    await rm(deviceFile, { force: true });
    await stopRelayDaemon(workDir);
  }
}

/** `nbd-client -c`: exit 0 when the device is connected, 1 when it is not. */
async function isConnected(device: string): Promise<boolean> {
  return (await probeTool('nbd-client', ['-c', device])).exitCode === 0;
}

/** The nbd module's devices (nbd0 .. nbd{nbds_max - 1}), in order. */
async function nbdDeviceNames(sysBlock: string): Promise<string[]> {
  const names = (await readdir(sysBlock)).filter((name) => /^nbd\d+$/.test(name));
  return names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
}

async function freeNbdDevice(sysBlock: string): Promise<string> {
  const names = await nbdDeviceNames(sysBlock);
  for (const name of names) {
    if (!(await isConnected(`/dev/${name}`))) return `/dev/${name}`;
  }
  throw new WeftError('RESOURCE_EXHAUSTED', `every NBD device (${names.length}) is in use; load the nbd module with a larger nbds_max`);
}
