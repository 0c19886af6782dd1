// The nbdfuse + loop attach method and the filesystem helpers against a real weftd: ext4 and xfs on
// attached volumes, data across detach and attach, growth, health, restarts; nothing left behind.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Attachment } from '../../adapters/csi/attach/attacher';
import { chooseAttacher, EachByItsMethod } from '../../adapters/csi/attach/choose';
import { deviceSizeBytes, diskSequence, loopsBackedBy } from '../../adapters/csi/attach/devices';
import {
  bindMount, filesystemStats, formatIfBlank, growFilesystem, isMountPoint, mountDevice, unmount, type FsType,
} from '../../adapters/csi/attach/mount';
import { NbdFuseLoopAttacher } from '../../adapters/csi/attach/nbdfuse-loop';
import { expectFiles, subdir, writeFiles } from '../helpers/attach-data';
import { freePort } from '../helpers/free-port';
import { expectNoLeftovers, forceCleanup, leftoversUnder, settledConnections } from '../helpers/mounts';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../helpers/weftd';
import { waitFor } from '../helpers/wait-for';

const MiB = 1024 * 1024;

let weftd: WeftdHandle;
let root: string;
const attacher = new NbdFuseLoopAttacher();

beforeAll(async () => {
  // A fixed NBD port: the relay reconnects to the address it was given, so a restart must keep it.
  weftd = await startWeftd({ extraArgs: ['--nbd-port', String(await freePort())] });
  root = makeTempDir('weft-attach-');
});

afterEach(async () => {
  try {
    expectNoLeftovers(root);
  } finally {
    await forceCleanup(root);
  }
});

afterAll(async () => {
  if (root) await forceCleanup(root);
  await cleanupAll();
});

async function createVolume(name: string, size: string): Promise<void> {
  const created = await weftd.weft(['volume', 'create', name, '--size', size]);
  if (created.code !== 0) throw new Error(`weft volume create ${name} failed: ${created.stderr}`);
}

/** A volume's private dirs: the attachment's work dir and a mount target. */
function dirsFor(volume: string) {
  return { workDir: path.join(root, volume, 'work'), target: path.join(root, volume, 'mnt') };
}

async function sizeOf(volume: string): Promise<number> {
  const shown = await weftd.weft(['volume', 'show', volume, '--output', 'json']);
  if (shown.code !== 0) throw new Error(`weft volume show ${volume} failed: ${shown.stderr}`);
  return Number(JSON.parse(shown.stdout).sizeBytes);
}

async function attach(volume: string): Promise<Attachment> {
  return attacher.attach({ volume, nbdUri: weftd.nbdUri(volume), sizeBytes: await sizeOf(volume) }, dirsFor(volume).workDir);
}

/** weft volume resize, then the attached device grown to match, online. */
async function resizeOnline(volume: string, size: string, attachment: Attachment): Promise<void> {
  expect((await weftd.weft(['volume', 'resize', volume, '--size', size])).code).toBe(0);
  expect(await attacher.growOnline(attachment, await sizeOf(volume))).toBe(true);
}

/** Attach, format if blank, mount: a volume ready for files. */
async function attachAndMount(volume: string, fsType: FsType): Promise<Attachment> {
  const attachment = await attach(volume);
  await formatIfBlank(attachment.devicePath, fsType);
  await mountDevice(attachment.devicePath, dirsFor(volume).target, fsType, []);
  return attachment;
}

async function unmountAndDetach(volume: string, attachment: Attachment): Promise<void> {
  await unmount(dirsFor(volume).target);
  await attacher.detach(attachment);
}

describe('nbdfuse + loop attach (real weftd, nbdfuse, loop devices, ext4 and xfs)', () => {
  test('ext4: format, mount, write, detach; attach again and the files are there, not reformatted', async () => {
    await createVolume('ext', '256MiB');
    const { target } = dirsFor('ext');
    const first = await attachAndMount('ext', 'ext4');
    expect(first.method).toBe('nbdfuse-loop');
    expect(first.devicePath).toMatch(/^\/dev\/loop\d+$/);
    expect(await deviceSizeBytes(first.devicePath)).toBe(256 * MiB);
    expect(await attach('ext')).toEqual(first); // attach is idempotent
    const files = writeFiles(target);
    await unmountAndDetach('ext', first);
    expect(await settledConnections(weftd, 'ext')).toBe(0);
    expectNoLeftovers(root);

    const second = await attachAndMount('ext', 'ext4');
    expectFiles(target, files);
    await unmountAndDetach('ext', second);
    await attacher.detach(second); // detach is idempotent
    await unmount(target); // so is unmount
    expect(await settledConnections(weftd, 'ext')).toBe(0);
  });

  test('xfs: format, write, find the files after a re-attach; formatIfBlank never puts ext4 over it', async () => {
    await createVolume('xfs', '512MiB'); // mkfs.xfs wants at least 300 MB
    const { target } = dirsFor('xfs');
    const first = await attachAndMount('xfs', 'xfs');
    const files = writeFiles(target);
    await unmount(target);
    await expect(formatIfBlank(first.devicePath, 'ext4')).rejects.toThrow(/holds a xfs filesystem, not ext4: refusing to format/);
    await attacher.detach(first);

    const second = await attachAndMount('xfs', 'xfs');
    expectFiles(target, files);
    await unmountAndDetach('xfs', second);
    expect(await settledConnections(weftd, 'xfs')).toBe(0);
  });

  test('resize: the mounted device grows online, without reconnecting; ext4 then grows (offline)', async () => {
    await createVolume('grow', '256MiB');
    const { target } = dirsFor('grow');
    const attachment = await attachAndMount('grow', 'ext4');
    const files = writeFiles(target);
    const before = await filesystemStats(target);
    expect((await weftd.weft(['volume', 'resize', 'grow', '--size', '512MiB'])).code).toBe(0);
    expect(await deviceSizeBytes(attachment.devicePath)).toBe(256 * MiB); // until told
    expect(await attacher.growOnline(attachment, await sizeOf('grow'))).toBe(true);
    expect(await deviceSizeBytes(attachment.devicePath)).toBe(512 * MiB);
    expectFiles(target, files); // still mounted, still the same data
    expect(await attacher.isHealthy(attachment)).toBe(true);

    await unmount(target);
    await growFilesystem(attachment.devicePath, target, 'ext4'); // offline: online ext4 growth needs CAP_SYS_RESOURCE
    await growFilesystem(attachment.devicePath, target, 'ext4'); // again: nothing to do
    await mountDevice(attachment.devicePath, target, 'ext4', []);
    const after = await filesystemStats(target);
    expect(after.totalBytes).toBeGreaterThan(before.totalBytes + 200 * MiB);
    expect(after.totalInodes).toBeGreaterThan(before.totalInodes);
    expectFiles(target, files);
    await unmountAndDetach('grow', attachment);
  });

  test('xfs grows online while files are open on it, and refuses to grow unmounted', async () => {
    await createVolume('xgrow', '512MiB');
    const { target } = dirsFor('xgrow');
    const attachment = await attachAndMount('xgrow', 'xfs');
    const files = writeFiles(target);
    const before = await filesystemStats(target);
    const open = fs.openSync(path.join(target, 'open-while-growing'), 'w');
    try {
      await resizeOnline('xgrow', '1GiB', attachment);
      await growFilesystem(attachment.devicePath, target, 'xfs');
      fs.writeSync(open, Buffer.alloc(MiB, 1));
      fs.fsyncSync(open);
    } finally {
      fs.closeSync(open);
    }
    expect((await filesystemStats(target)).totalBytes).toBeGreaterThan(before.totalBytes + 400 * MiB);
    expectFiles(target, files);
    await unmount(target);
    await expect(growFilesystem(attachment.devicePath, target, 'xfs')).rejects.toThrow(/grows only while mounted/);
    await attacher.detach(attachment);
  });

  test('isHealthy is false once nbdfuse is killed, and detach still removes everything', async () => {
    await createVolume('sick', '64MiB');
    const attachment = await attach('sick');
    expect(await attacher.isHealthy(attachment)).toBe(true);
    process.kill(Number(attachment.details.nbdfusePid), 'SIGKILL');
    await waitFor(async () => !(await attacher.isHealthy(attachment)));
    expect(leftoversUnder(root).loops).toEqual([attachment.devicePath]); // the loop device and dead FUSE mount stay
    await attacher.detach(attachment);
    expectNoLeftovers(root);
    expect(await settledConnections(weftd, 'sick')).toBe(0);
  });

  test('detach finds its loop device once the FUSE mount is gone from view (as when a container restarts), and leaves none', async () => {
    await createVolume('unseen', '64MiB');
    const attachment = await attach('unseen');
    const sequence = attachment.details.loopSequence;
    expect(sequence).toMatch(/^\d+$/);
    const stillSetUp = async () => (await diskSequence(attachment.devicePath)) === sequence && spawnSync('losetup', [attachment.devicePath]).status === 0;
    process.kill(Number(attachment.details.nbdfusePid), 'SIGKILL');
    await waitFor(async () => !(await attacher.isHealthy(attachment)));
    expect(spawnSync('umount', ['--lazy', attachment.details.fuseDir]).status).toBe(0); // the mount gone, the loop device on
    expect(await loopsBackedBy(attachment.details.backingFile)).toEqual([]); // the kernel shows its file elsewhere now
    expect(await stillSetUp()).toBe(true);
    try {
      await attacher.detach(attachment);
      expect(await stillSetUp()).toBe(false);
    } finally {
      if (await stillSetUp()) spawnSync('losetup', ['--detach', attachment.devicePath]);
    }
    expectNoLeftovers(root);
  });

  test('a mounted attachment survives weftd restarts (SIGTERM, then kill -9): the relay reconnects', async () => {
    await createVolume('steady', '256MiB');
    const { target } = dirsFor('steady');
    const attachment = await attachAndMount('steady', 'ext4');
    const before = writeFiles(target);

    await weftd.restart();
    expect(await attacher.isHealthy(attachment)).toBe(true);
    const afterRestart = writeFiles(subdir(target, 'a'));

    await weftd.kill9();
    await weftd.start();
    const afterCrash = writeFiles(subdir(target, 'b'));
    expect(await attacher.isHealthy(attachment)).toBe(true);

    await unmount(target);
    await attacher.detach(attachment);
    const again = await attachAndMount('steady', 'ext4');
    expectFiles(target, before);
    expectFiles(path.join(target, 'a'), afterRestart);
    expectFiles(path.join(target, 'b'), afterCrash);
    await unmount(target);
    expect((await run('fsck.ext4', ['-n', '-f', again.devicePath])).code).toBe(0); // and the filesystem is clean
    await attacher.detach(again);
    expect(await settledConnections(weftd, 'steady')).toBe(0);
  });

  test('attach finishes over what a half-done attach left; detach of a half-done attachment cleans what exists', async () => {
    await createVolume('half', '64MiB');
    const abandoned = await attach('half');
    // As if weftd died between starting nbdfuse and recording the attachment: no loop device, no record.
    expect((await run('losetup', ['--detach', abandoned.devicePath])).code).toBe(0);
    fs.rmSync(path.join(abandoned.details.workDir, 'attachment.json'));

    const attachment = await attach('half');
    expect(await attacher.isHealthy(attachment)).toBe(true);
    expect(attachment.details.nbdfusePid).not.toBe(abandoned.details.nbdfusePid);
    expect(leftoversUnder(root).processes.map((p) => p.name).sort()).toEqual(['nbdfuse', 'nbdkit']);

    expect((await run('losetup', ['--detach', attachment.devicePath])).code).toBe(0); // half undone by hand
    expect(await attacher.isHealthy(attachment)).toBe(false);
    await attacher.detach(attachment);
    expectNoLeftovers(root);
  });

  test('attach refuses a volume that does not exist, or a work dir holding another volume, and leaves nothing', async () => {
    const missing = { volume: 'nope', nbdUri: weftd.nbdUri('nope'), sizeBytes: MiB };
    await expect(attacher.attach(missing, dirsFor('nope').workDir)).rejects.toThrow(/nbdfuse .* exited with 1: .*no export named 'nope~growable'/s);
    expectNoLeftovers(root);

    await createVolume('owner', '64MiB');
    const attachment = await attach('owner');
    await expect(attacher.attach({ volume: 'other', nbdUri: weftd.nbdUri('other'), sizeBytes: MiB }, dirsFor('owner').workDir)).rejects.toThrow(/already holds volume owner/);
    await attacher.detach(attachment);
  });

  test('mount helpers: read-only bind mount, a device bind-mounted on a file, stats, idempotent mount and unmount', async () => {
    await createVolume('binds', '64MiB');
    const { target } = dirsFor('binds');
    const attachment = await attachAndMount('binds', 'ext4');
    await mountDevice(attachment.devicePath, target, 'ext4', []); // again: a no-op
    writeFiles(target, 1);

    const readOnly = path.join(root, 'binds', 'ro');
    await bindMount(target, readOnly, true);
    await bindMount(target, readOnly, true); // again: a no-op
    await expect(bindMount(target, readOnly, false)).rejects.toThrow(/already mounted read-only/);
    // A read-only bind cut short before its remount (weftd died) is made read-only by the next call.
    const cutShort = path.join(root, 'binds', 'cut-short');
    await bindMount(target, cutShort, false);
    await bindMount(target, cutShort, true);
    expect(() => fs.writeFileSync(path.join(cutShort, 'new'), 'x')).toThrow(/EROFS/);
    await unmount(cutShort);
    expect(fs.existsSync(path.join(readOnly, 'file-0.bin'))).toBe(true);
    expect(() => fs.writeFileSync(path.join(readOnly, 'new'), 'x')).toThrow(/EROFS/);

    const blockFile = path.join(root, 'binds', 'dev', 'block');
    await bindMount(attachment.devicePath, blockFile, false);
    expect(fs.statSync(blockFile).isBlockDevice()).toBe(true);

    const stats = await filesystemStats(target);
    expect(stats.totalBytes).toBeGreaterThan(50 * MiB);
    expect(stats.usedBytes).toBeGreaterThan(256 * 1024);
    expect(stats.availableBytes).toBeLessThan(stats.totalBytes - stats.usedBytes + 1);
    expect(stats.usedInodes + stats.freeInodes).toBe(stats.totalInodes);

    for (const mountPoint of [blockFile, readOnly, target]) {
      await unmount(mountPoint);
      expect(await isMountPoint(mountPoint)).toBe(false);
    }
    await attacher.detach(attachment);
  });

  test('an attachment made by the other method (an earlier run picked it) is checked, grown and detached by its own: not taken for broken and torn down', async () => {
    await createVolume('other-method', '64MiB');
    const attachment = await attachAndMount('other-method', 'ext4');
    // This run picked kernel NBD (the nbd module loaded since); the attachment is nbdfuse's.
    const now = new EachByItsMethod('kernel-nbd');
    expect(await now.isHealthy(attachment)).toBe(true);
    expect((await weftd.weft(['volume', 'resize', 'other-method', '--size', '96MiB'])).code).toBe(0);
    expect(await now.growOnline(attachment, 96 * MiB)).toBe(true);
    await unmount(dirsFor('other-method').target);
    await now.detach(attachment);
    expectNoLeftovers(root);
    expect(await settledConnections(weftd, 'other-method')).toBe(0);
  });

  test("a node reports as many attachments as its method can hold: kernel NBD one per device the nbd module made (nbds_max), loop devices up to weftd's bound", async () => {
    // A directory laid out as /sys/block: the nbd module's devices among others.
    const sysBlock = makeTempDir('weft-sys-block-');
    const devices = (names: string[]) => names.forEach((name) => fs.mkdirSync(path.join(sysBlock, name)));
    devices(['vda', 'loop0', 'loop1', 'nbd-not-a-device', ...Array.from({ length: 16 }, (_, i) => `nbd${i}`)]);
    expect(await new EachByItsMethod('kernel-nbd', sysBlock).maxAttachments()).toBe(16);
    expect(await new EachByItsMethod('nbdfuse-loop', sysBlock).maxAttachments()).toBe(128);
    devices(Array.from({ length: 200 }, (_, i) => `nbd${16 + i}`));
    expect(await new EachByItsMethod('kernel-nbd', sysBlock).maxAttachments()).toBe(128);
  });

  test('chooseAttacher picks nbdfuse-loop on this machine (no nbd module) and logs why', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const chosen = await chooseAttacher(pino({}, sink));
    expect(chosen.method).toBe('nbdfuse-loop');
    const entry = JSON.parse(lines[0]) as { msg: string; method: string; reason: string };
    expect(entry).toMatchObject({ msg: 'attach method chosen', method: 'nbdfuse-loop' });
    expect(entry.reason).toMatch(/kernel-nbd unusable/);
  });
});
