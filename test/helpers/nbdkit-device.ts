// Disks that misbehave, for tests and benches: a sparse file served by nbdkit through one of its
// filters, exposed by nbdfuse as a regular file that weftd takes as a pool member. A slow disk (the
// delay filter: every read and write takes latencyMs more), a failing one (the error filter:
// every read and write fails with EIO while a trigger file exists), also with an ext4 filesystem on
// it through a loop device, and a stalling one (the sh plugin: flushes hang while a trigger file
// exists). Writes through FUSE reach nbdkit each time; reads may be served from the
// page cache.

import fs from 'node:fs';
import path from 'node:path';
import { run, type RunResult } from './weftd';

export interface NbdkitDevice {
  /** The file to give weftd as a pool member (`--pool CLASS:FILE`). */
  file: string;
  /**
   * Unmounts lazily: weftd may still hold the file open; nbdfuse (with its nbdkit) exits once
   * nothing does. Stop weftd first for everything to be gone.
   */
  unmount(): Promise<void>;
}

/** Makes DIR/slow.img of sizeBytes and mounts it slowed down under DIR/slow-mount. */
export function startSlowDevice(dir: string, sizeBytes: number, latencyMs: number): Promise<NbdkitDevice> {
  return mountThroughNbdkit(dir, 'slow', sizeBytes, (image) => ['--filter=delay', 'file', image, `rdelay=${latencyMs}ms`, `wdelay=${latencyMs}ms`]);
}

export interface StallingDevice extends NbdkitDevice {
  /** From now on a flush (fdatasync) that reaches the disk waits, for as long as stall(false) is not called. */
  stall(stalling: boolean): void;
  /** The same for every read and write that reaches the disk: a disk that stopped answering. */
  stallIo(stalling: boolean): void;
}

/**
 * Makes DIR/stalling.img of sizeBytes and mounts it under DIR/stalling-mount: a disk whose cache
 * flushes hang while stalled, as a disk that stopped answering does to fdatasync while the page
 * cache still takes writes; reads and writes go on (each a few milliseconds: nbdkit's sh plugin),
 * unless they are stalled too.
 */
export async function startStallingDevice(dir: string, sizeBytes: number): Promise<StallingDevice> {
  const trigger = path.join(dir, 'stalling.trigger');
  const ioTrigger = path.join(dir, 'stalling-io.trigger');
  const waitWhile = (file: string) => `while [ -e '${file}' ]; do sleep 0.05; done`;
  const script = path.join(dir, 'stalling.sh');
  const device = await mountThroughNbdkit(dir, 'stalling', sizeBytes, (image) => {
    fs.writeFileSync(
      script,
      [
        '#!/bin/sh',
        'case "$1" in',
        `  get_size) stat -c %s '${image}' ;;`,
        '  can_write|can_flush) exit 0 ;;',
        `  pread) ${waitWhile(ioTrigger)}; exec dd if='${image}' skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;`,
        `  pwrite) ${waitWhile(ioTrigger)}; exec dd of='${image}' seek="$4" oflag=seek_bytes conv=notrunc status=none ;;`,
        `  flush) ${waitWhile(trigger)} ;;`,
        '  *) exit 2 ;;',
        'esac',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    return ['sh', script];
  });
  return {
    ...device,
    stall(stalling) {
      if (stalling) fs.writeFileSync(trigger, '');
      else fs.rmSync(trigger, { force: true });
    },
    stallIo(stalling) {
      if (stalling) fs.writeFileSync(ioTrigger, '');
      else fs.rmSync(ioTrigger, { force: true });
    },
  };
}

export interface FailingDevice extends NbdkitDevice {
  /** From now on every read and write that reaches the disk fails with EIO (fail(true)), or none does (fail(false)). */
  fail(failing: boolean): void;
}

/** Makes DIR/failing.img of sizeBytes and mounts it under DIR/failing-mount; writes succeed until fail(true). */
export async function startFailingDevice(dir: string, sizeBytes: number): Promise<FailingDevice> {
  const trigger = path.join(dir, 'failing.trigger');
  const errors = ['pread', 'pwrite'].flatMap((call) => [`error-${call}=EIO`, `error-${call}-rate=100%`, `error-${call}-file=${trigger}`]);
  const device = await mountThroughNbdkit(dir, 'failing', sizeBytes, (image) => ['--filter=error', 'file', image, ...errors]);
  return {
    ...device,
    fail(failing) {
      if (failing) fs.writeFileSync(trigger, '');
      else fs.rmSync(trigger, { force: true });
    },
  };
}

export interface FailingFilesystem {
  /** A directory on the filesystem (for `--data-dir`). */
  dir: string;
  /** As FailingDevice's: once the disk fails, ext4 turns the filesystem read-only for good. */
  fail(failing: boolean): void;
  /** Unmounts the filesystem and detaches its loop device (weftd stopped first), then the disk. */
  unmount(): Promise<void>;
}

/** An ext4 filesystem on a failing disk (a loop device on startFailingDevice's file), mounted under DIR/fs. */
export async function startFailingFilesystem(dir: string, sizeBytes: number): Promise<FailingFilesystem> {
  const disk = await startFailingDevice(dir, sizeBytes);
  const mustRun = async (command: string, args: string[]) => {
    const result = await run(command, args);
    if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr.trim()}`);
    return result.stdout.trim();
  };
  const mount = path.join(dir, 'fs');
  fs.mkdirSync(mount);
  let loop: string | undefined;
  let mounted = false;
  const unmount = async () => {
    disk.fail(false);
    if (mounted) await mustRun('umount', ['-l', mount]);
    if (loop) await mustRun('losetup', ['-d', loop]);
    await disk.unmount();
  };
  try {
    loop = await mustRun('losetup', ['--find', '--show', disk.file]);
    await mustRun('mkfs.ext4', ['-q', loop]);
    await mustRun('mount', [loop, mount]);
    mounted = true;
    fs.mkdirSync(path.join(mount, 'data'));
  } catch (err) {
    await unmount().catch(() => undefined);
    throw err;
  }
  return { dir: path.join(mount, 'data'), fail: disk.fail, unmount };
}

/** Serves DIR/NAME.img through `nbdkit --exit-with-parent PLUGIN-ARGS` (pluginArgs(image)), mounted by nbdfuse. */
async function mountThroughNbdkit(dir: string, name: string, sizeBytes: number, pluginArgs: (image: string) => string[]): Promise<NbdkitDevice> {
  const image = path.join(dir, `${name}.img`);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, sizeBytes);
  const mount = path.join(dir, `${name}-mount`);
  fs.mkdirSync(mount);
  const pidFile = path.join(dir, `${name}-nbdfuse.pid`);
  const nbdkit = ['nbdkit', '--exit-with-parent', ...pluginArgs(image)];
  let exited: RunResult | undefined;
  void run('nbdfuse', ['-P', pidFile, path.join(mount, 'nbd'), '[', ...nbdkit, ']']).then((result) => (exited = result));
  for (let waitedMs = 0; !fs.existsSync(pidFile) || fs.statSync(pidFile).size === 0; waitedMs += 50) {
    if (exited) throw new Error(`nbdfuse exited (${exited.code ?? exited.signal}): ${exited.stderr.trim()}`);
    if (waitedMs > 10_000) throw new Error('nbdfuse did not start within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    file: path.join(mount, 'nbd'),
    async unmount() {
      const result = await run('fusermount3', ['-u', '-z', mount]);
      if (result.code !== 0) throw new Error(`fusermount3 -u -z ${mount}: ${result.stderr.trim()}`);
    },
  };
}
