// End to end through the CSI socket only, against a real weftd: ext4 volumes staged, published and
// written, a snapshot restored into a new volume, expansion, a block volume; nothing left behind.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expectFiles, subdir, writeFiles } from '../helpers/attach-data';
import { freePort } from '../helpers/free-port';
import type { CsiClient } from '../helpers/csi-client';
import { cleanUpAfterTests, startCsiWeftd, type CsiWeftd } from '../helpers/csi-weftd';
import { nbdConnections, settledConnections } from '../helpers/mounts';
import { liveCommandLine } from '../helpers/processes';
import { waitFor } from '../helpers/wait-for';
import { run, type WeftdHandle } from '../helpers/weftd';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK_SIZE = 4096;
const EXT4_WRITER = { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const XFS_WRITER = { mount: { fs_type: 'xfs', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const BLOCK_WRITER = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

let started: CsiWeftd | undefined;
let weftd: WeftdHandle;
let csi: CsiClient;
/** Staging and target paths, as a CO would make them. */
let root: string;

beforeAll(async () => {
  started = await startCsiWeftd('weft-e2e-', { extraArgs: ['--nbd-port', String(await freePort())] });
  ({ weftd, csi, root } = started);
});

cleanUpAfterTests(() => started);

/** What a CO passes for one volume on this node. */
function pathsFor(volumeId: string) {
  return { staging: path.join(root, 'staging', volumeId), target: path.join(root, 'pods', volumeId, 'mount') };
}

async function createVolume(name: string, bytes: number, capability: object, source?: object): Promise<string> {
  const { volume } = await csi.call('CreateVolume', {
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [capability],
    volume_content_source: source,
  });
  expect(volume.capacity_bytes).toBeGreaterThanOrEqual(bytes);
  return volume.volume_id;
}

async function stageAndPublish(volumeId: string, capability: object): Promise<string> {
  const { staging, target } = pathsFor(volumeId);
  await csi.call('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: capability });
  await csi.call('NodePublishVolume', { volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: capability });
  return target;
}

async function unpublishAndUnstage(volumeId: string): Promise<void> {
  const { staging, target } = pathsFor(volumeId);
  await csi.call('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
  await csi.call('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
  expect(fs.existsSync(target)).toBe(false);
  expect(fs.existsSync(path.join(weftd.dataDir, 'csi', 'attach', volumeId))).toBe(false); // the attachment's work dir
  expect(await settledConnections(weftd, volumeId)).toBe(0);
}

async function usedBytes(volumeId: string, volumePath: string): Promise<{ total: number; used: number }> {
  const { usage } = await csi.call('NodeGetVolumeStats', { volume_id: volumeId, volume_path: volumePath });
  const bytes = usage.find((u) => u.unit === 'BYTES')!;
  return { total: Number(bytes.total), used: Number(bytes.used) };
}

describe('end to end through CSI (real weftd, nbdfuse + loop, ext4)', () => {
  test('ext4: stage, publish, write; snapshot; a volume from the snapshot has the files; unpublish, unstage, delete', async () => {
    const source = await createVolume('e2e-source', 256 * MiB, EXT4_WRITER);
    const sourceTarget = await stageAndPublish(source, EXT4_WRITER);
    const files = writeFiles(sourceTarget);
    expect((await usedBytes(source, sourceTarget)).used).toBeGreaterThan(3 * 256 * 1024);

    const { snapshot } = await csi.call('CreateSnapshot', { source_volume_id: source, name: 'e2e-snap' });
    expect(snapshot.ready_to_use).toBe(true);
    const restored = await createVolume('e2e-restored', 256 * MiB, EXT4_WRITER, { snapshot: { snapshot_id: snapshot.snapshot_id } });
    const restoredTarget = await stageAndPublish(restored, EXT4_WRITER);
    expectFiles(restoredTarget, files);
    fs.writeFileSync(path.join(restoredTarget, 'only-in-restored'), 'x'); // the clone is writable...
    expect(fs.existsSync(path.join(sourceTarget, 'only-in-restored'))).toBe(false); // ...and separate

    await unpublishAndUnstage(restored);
    await unpublishAndUnstage(source);
    await csi.call('DeleteVolume', { volume_id: restored });
    await csi.call('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
    await csi.call('DeleteVolume', { volume_id: source });
  });

  test('xfs: a volume restored from a snapshot is staged on the node where its source is mounted (same filesystem UUID)', async () => {
    const source = await createVolume('e2e-xfs-source', 512 * MiB, XFS_WRITER); // mkfs.xfs wants at least 300 MB
    const sourceTarget = await stageAndPublish(source, XFS_WRITER);
    const files = writeFiles(sourceTarget);
    const { snapshot } = await csi.call('CreateSnapshot', { source_volume_id: source, name: 'e2e-xfs-snap' });
    const restored = await createVolume('e2e-xfs-restored', 512 * MiB, XFS_WRITER, { snapshot: { snapshot_id: snapshot.snapshot_id } });
    const restoredTarget = await stageAndPublish(restored, XFS_WRITER);
    expectFiles(restoredTarget, files);
    fs.writeFileSync(path.join(restoredTarget, 'only-in-restored'), 'x');
    expect(fs.existsSync(path.join(sourceTarget, 'only-in-restored'))).toBe(false);

    await unpublishAndUnstage(restored);
    await unpublishAndUnstage(source);
    await csi.call('DeleteVolume', { volume_id: restored });
    await csi.call('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
    await csi.call('DeleteVolume', { volume_id: source });
  });

  test('online expansion while published (xfs): ControllerExpandVolume, NodeExpandVolume; df grows, files stay', async () => {
    const volume = await createVolume('e2e-online', 512 * MiB, XFS_WRITER); // mkfs.xfs wants at least 300 MB
    const target = await stageAndPublish(volume, XFS_WRITER);
    const files = writeFiles(target);
    const before = await usedBytes(volume, target);

    // Asked of the node before the controller: not final, the CO tries again.
    const early = await csi.failure('NodeExpandVolume', { volume_id: volume, volume_path: target, capacity_range: { required_bytes: GiB } });
    expect(early).toMatchObject({ code: 14, details: expect.stringMatching(/ControllerExpandVolume first, or try again/) });
    const expanded = await csi.call('ControllerExpandVolume', { volume_id: volume, capacity_range: { required_bytes: GiB } });
    expect(expanded).toMatchObject({ capacity_bytes: GiB, node_expansion_required: true });
    const grown = await csi.call('NodeExpandVolume', { volume_id: volume, volume_path: target, capacity_range: { required_bytes: GiB } });
    expect(grown.capacity_bytes).toBe(GiB);
    expect((await usedBytes(volume, target)).total).toBeGreaterThan(before.total + 400 * MiB);
    expectFiles(target, files);
    const more = writeFiles(subdir(target, 'after-growth'));
    expectFiles(path.join(target, 'after-growth'), more);

    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('expansion while not staged (ext4): the filesystem has the new size at the next stage', async () => {
    // Growing ext4 while mounted needs CAP_SYS_RESOURCE, which this machine (a container) lacks; the
    // CSI flow where the volume grows between uses works anywhere.
    const volume = await createVolume('e2e-grow', 256 * MiB, EXT4_WRITER);
    let target = await stageAndPublish(volume, EXT4_WRITER);
    const files = writeFiles(target);
    const before = await usedBytes(volume, target);
    await unpublishAndUnstage(volume);

    const expanded = await csi.call('ControllerExpandVolume', { volume_id: volume, capacity_range: { required_bytes: 512 * MiB } });
    expect(expanded.capacity_bytes).toBe(512 * MiB);
    target = await stageAndPublish(volume, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    const grown = await csi.call('NodeExpandVolume', { volume_id: volume, volume_path: target, staging_target_path: staging, capacity_range: { required_bytes: 512 * MiB } });
    expect(grown.capacity_bytes).toBe(512 * MiB);
    const after = await usedBytes(volume, target);
    expect(after.total).toBeGreaterThan(before.total + 200 * MiB);
    expectFiles(target, files);

    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a published volume survives weftd restarts (SIGTERM, then kill -9): files stay readable and writable', async () => {
    const volume = await createVolume('e2e-steady', 128 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const before = writeFiles(target);
    const condition = async () => (await csi.call('NodeGetVolumeStats', { volume_id: volume, volume_path: target })).volume_condition;

    await weftd.restart();
    expect(await condition()).toMatchObject({ abnormal: false });
    const afterRestart = writeFiles(subdir(target, 'after-restart'));
    await weftd.kill9();
    await weftd.start();
    expect(await condition()).toMatchObject({ abnormal: false });
    const afterCrash = writeFiles(subdir(target, 'after-crash'));

    expectFiles(target, before);
    expectFiles(path.join(target, 'after-restart'), afterRestart);
    expectFiles(path.join(target, 'after-crash'), afterCrash);
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a filesystem gone read-only (as after I/O errors) is an abnormal condition, with the usage kubelet needs to hear it', async () => {
    const volume = await createVolume('e2e-ro', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const stats = () => csi.call('NodeGetVolumeStats', { volume_id: volume, volume_path: target });
    expect((await stats()).volume_condition).toMatchObject({ abnormal: false });
    const { staging } = pathsFor(volume);
    expect((await run('mount', ['-o', 'remount,ro', staging])).code).toBe(0); // the filesystem itself: every mount of it
    try {
      const { usage, volume_condition } = await stats();
      expect(volume_condition).toMatchObject({ abnormal: true, message: expect.stringMatching(/is read-only, not as published/) });
      expect(usage.map((u) => [u.unit, Number(u.total)])).toEqual([['BYTES', 64 * MiB]]);
    } finally {
      await run('mount', ['-o', 'remount,rw', staging]);
    }
    expect((await stats()).volume_condition).toMatchObject({ abnormal: false });
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('an ext4 marked with errors (as after I/O errors) is checked and fixed when it is staged again, as the abnormal condition advises', async () => {
    const volume = await createVolume('e2e-fsck', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const files = writeFiles(target);
    await unpublishAndUnstage(volume);
    // Its superblock marked "with errors", as the kernel marks it: debugfs on a copy, written back.
    const image = path.join(root, 'e2e-fsck.img');
    const superblock = async () => {
      expect((await run('nbdcopy', [weftd.nbdUri(volume), image])).code).toBe(0);
      return (await run('dumpe2fs', ['-h', image])).stdout;
    };
    await superblock();
    expect((await run('debugfs', ['-w', '-R', 'ssv state 3', image])).code).toBe(0);
    expect((await run('nbdcopy', [image, weftd.nbdUri(volume)])).code).toBe(0);
    expect(await superblock()).toMatch(/^Filesystem state:\s+clean with errors$/m);

    expectFiles(await stageAndPublish(volume, EXT4_WRITER), files);
    await unpublishAndUnstage(volume);
    expect(await superblock()).toMatch(/^Filesystem state:\s+clean$/m);
    fs.rmSync(image);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a call for a volume while another runs (a CO whose call timed out asks again) waits for it, then runs: a second stage succeeds, an unstage unstages', async () => {
    const volume = await createVolume('e2e-twice', 64 * MiB, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    const stage = () => csi.call('NodeStageVolume', { volume_id: volume, staging_target_path: staging, volume_capability: EXT4_WRITER });
    // Both arrive while the first attaches and formats (seconds): ABORTED, as before, is final for Nomad.
    const twice = await Promise.allSettled([stage(), stage()]);
    expect(twice.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(await nbdConnections(weftd, volume)).toBe(1); // one attachment
    // Nomad's cleanup after a stage it gave up on: the unstage comes last, and the volume ends unstaged.
    const undone = await Promise.allSettled([stage(), csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging })]);
    expect(undone.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled']);
    expect((await run('findmnt', ['--mountpoint', staging])).code).not.toBe(0);
    expect(await settledConnections(weftd, volume)).toBe(0);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('paths spelled with a trailing slash or a double one name the same stage and publication: unpublish and unstage undo them', async () => {
    const volume = await createVolume('e2e-slash', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: `${target}/` });
    expect(fs.existsSync(target)).toBe(false);
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging.replace('/staging/', '/staging//') + '/' });
    expect((await run('findmnt', ['--mountpoint', staging])).code).not.toBe(0);
    expect(await settledConnections(weftd, volume)).toBe(0);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('block access: the device is published as a file; what is written through it is there after a new stage', async () => {
    const volume = await createVolume('e2e-block', 64 * MiB, BLOCK_WRITER);
    const data = randomBytes(MiB);
    let device = await stageAndPublish(volume, BLOCK_WRITER);
    expect(fs.statSync(device).isBlockDevice()).toBe(true);
    // Stats and expansion find the volume only where it is staged or published.
    for (const method of ['NodeGetVolumeStats', 'NodeExpandVolume'] as const) {
      for (const elsewhere of ['some/path', path.relative(process.cwd(), device), path.join(root, 'elsewhere')]) {
        expect(await csi.code(method, { volume_id: volume, volume_path: elsewhere, capacity_range: { required_bytes: 64 * MiB } })).toBe('NOT_FOUND');
      }
    }
    const fd = fs.openSync(device, 'r+');
    fs.writeSync(fd, data, 0, data.length, 8 * MiB);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    await unpublishAndUnstage(volume);

    device = await stageAndPublish(volume, BLOCK_WRITER);
    const readBack = Buffer.alloc(MiB);
    const readFd = fs.openSync(device, 'r');
    fs.readSync(readFd, readBack, 0, MiB, 8 * MiB);
    fs.closeSync(readFd);
    expect(readBack.equals(data)).toBe(true);
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a block volume grows online while writes to it are still in the page cache; they stay', async () => {
    // The kernel writes a loop device's dirty pages back before it changes its size, through
    // nbdfuse to weftd itself: weftd hung for good (D state) when it did that on its event loop.
    const volume = await createVolume('e2e-block-grow', 64 * MiB, BLOCK_WRITER);
    const device = await stageAndPublish(volume, BLOCK_WRITER);
    const data = randomBytes(4 * MiB);
    const fd = fs.openSync(device, 'r+');
    fs.writeSync(fd, data, 0, data.length, 60 * MiB); // no fsync: dirty pages of the device
    fs.closeSync(fd);
    await csi.call('ControllerExpandVolume', { volume_id: volume, capacity_range: { required_bytes: 128 * MiB } });
    const grown = await csi.call('NodeExpandVolume', { volume_id: volume, volume_path: device, capacity_range: { required_bytes: 128 * MiB } });
    expect(grown.capacity_bytes).toBe(128 * MiB);
    expect(Number(spawnSync('blockdev', ['--getsize64', device], { encoding: 'utf8' }).stdout)).toBe(128 * MiB);
    await unpublishAndUnstage(volume);

    const again = await stageAndPublish(volume, BLOCK_WRITER);
    const readBack = Buffer.alloc(data.length);
    const readFd = fs.openSync(again, 'r');
    fs.readSync(readFd, readBack, 0, readBack.length, 60 * MiB);
    fs.closeSync(readFd);
    expect(readBack.equals(data)).toBe(true);
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a read-only block publication cannot be written through, whatever opens it; it goes with its unpublish', async () => {
    const volume = await createVolume('e2e-block-ro', 64 * MiB, BLOCK_WRITER);
    const data = randomBytes(MiB);
    const writable = await stageAndPublish(volume, BLOCK_WRITER);
    const fd = fs.openSync(writable, 'r+');
    fs.writeSync(fd, data, 0, data.length, 4 * MiB);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const { staging } = pathsFor(volume);
    const readOnly = path.join(root, 'pods', 'reader', 'dev');
    await csi.call('NodePublishVolume', { volume_id: volume, staging_target_path: staging, target_path: readOnly, volume_capability: BLOCK_WRITER, readonly: true });
    expect(fs.statSync(readOnly).isBlockDevice()).toBe(true);
    const reader = fs.openSync(readOnly, 'r+'); // a read-only block device opens for writing, and refuses the write
    try {
      expect(() => fs.writeSync(reader, data, 0, BLOCK_SIZE, 0)).toThrow(/EPERM|EROFS/);
    } finally {
      fs.closeSync(reader);
    }
    const readBack = Buffer.alloc(MiB);
    const readFd = fs.openSync(readOnly, 'r');
    fs.readSync(readFd, readBack, 0, MiB, 4 * MiB);
    fs.closeSync(readFd);
    expect(readBack.equals(data)).toBe(true);
    const writer = fs.openSync(writable, 'r+'); // the other publication stays writable
    fs.writeSync(writer, data, 0, BLOCK_SIZE, 0);
    fs.closeSync(writer);
    // Grown online, the read-only publication shows the new size too (its loop device is its own).
    await csi.call('ControllerExpandVolume', { volume_id: volume, capacity_range: { required_bytes: 128 * MiB } });
    await csi.call('NodeExpandVolume', { volume_id: volume, volume_path: writable, capacity_range: { required_bytes: 128 * MiB } });
    const sizeOf = (device: string) => Number(spawnSync('blockdev', ['--getsize64', device], { encoding: 'utf8' }).stdout);
    expect([sizeOf(writable), sizeOf(readOnly)]).toEqual([128 * MiB, 128 * MiB]);
    // This weftd's loop devices only (over its nbdfuse files, and over those): other test files run alongside.
    const loops = () => (JSON.parse(spawnSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' }).stdout || '{}') as { loopdevices?: { name: string; 'back-file': string | null }[] }).loopdevices ?? [];
    const stagedLoops = () => loops().filter((l) => l['back-file']?.startsWith(started!.weftdDir));
    const overLoops = () => loops().filter((l) => stagedLoops().some((staged) => staged.name === l['back-file'])).length;
    expect(overLoops()).toBe(1);
    await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: readOnly });
    expect(overLoops()).toBe(0);
    // One made for a publication that weftd died before recording goes with the unstage.
    const staged = stagedLoops().find((l) => l['back-file']?.endsWith('/nbd'))!;
    expect(spawnSync('losetup', ['--find', '--show', '--read-only', staged.name]).status).toBe(0);
    expect(overLoops()).toBe(1);
    await unpublishAndUnstage(volume);
    expect(overLoops()).toBe(0);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a block volume staged for reading only is published read-only, even by a publish that names a writer mode', async () => {
    const volume = await createVolume('e2e-block-reader', 64 * MiB, BLOCK_WRITER);
    const reader = { block: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } };
    const { staging, target } = pathsFor(volume);
    await csi.call('NodeStageVolume', { volume_id: volume, staging_target_path: staging, volume_capability: reader });
    await csi.call('NodePublishVolume', { volume_id: volume, staging_target_path: staging, target_path: target, volume_capability: BLOCK_WRITER });
    const fd = fs.openSync(target, 'r+');
    try {
      expect(() => fs.writeSync(fd, Buffer.alloc(BLOCK_SIZE, 0x42), 0, BLOCK_SIZE, 0)).toThrow(/EPERM|EROFS/);
    } finally {
      fs.closeSync(fd);
    }
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a read-only stage changes nothing on the volume: an xfs expanded while not staged is mounted as it is, not grown (which failed: EROFS)', async () => {
    const volume = await createVolume('e2e-reader', 512 * MiB, XFS_WRITER); // mkfs.xfs wants at least 300 MB
    const files = writeFiles(await stageAndPublish(volume, XFS_WRITER));
    await unpublishAndUnstage(volume);
    await csi.call('ControllerExpandVolume', { volume_id: volume, capacity_range: { required_bytes: GiB } });
    const reader = { mount: { fs_type: 'xfs', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } };
    const target = await stageAndPublish(volume, reader);
    expectFiles(target, files);
    expect(() => fs.writeFileSync(path.join(target, 'x'), 'x')).toThrow(/EROFS/);
    expect((await usedBytes(volume, target)).total).toBeLessThan(512 * MiB);
    await unpublishAndUnstage(volume);
    // Staged read-write again, it grows.
    expect((await usedBytes(volume, await stageAndPublish(volume, XFS_WRITER))).total).toBeGreaterThan(900 * MiB);
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a read-only publication cut short before its read-only remount is made read-only when kubelet asks again', async () => {
    const volume = await createVolume('e2e-ro', 64 * MiB, EXT4_WRITER);
    const { staging, target } = pathsFor(volume);
    await csi.call('NodeStageVolume', { volume_id: volume, staging_target_path: staging, volume_capability: EXT4_WRITER });
    const publish = { volume_id: volume, staging_target_path: staging, target_path: target, volume_capability: EXT4_WRITER, readonly: true };
    await csi.call('NodePublishVolume', publish);
    expect(() => fs.writeFileSync(path.join(target, 'x'), 'x')).toThrow(/EROFS/);
    // As weftd killed between the bind and its remount leaves it: the publication recorded, the bind writable.
    expect(spawnSync('mount', ['-o', 'remount,bind,rw', target]).status).toBe(0);
    fs.writeFileSync(path.join(target, 'x'), 'x');
    await csi.call('NodePublishVolume', publish);
    expect(() => fs.writeFileSync(path.join(target, 'y'), 'y')).toThrow(/EROFS/);
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a mount a process still uses is not unmounted: unpublish and unstage fail and detach nothing; once it is free they succeed, and its writes are on the volume', async () => {
    const volume = await createVolume('e2e-busy', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    const busy = /is still in use and was not unmounted .*stop what uses it, then try again/;

    const inTarget = fs.openSync(path.join(target, 'through-target'), 'w');
    fs.writeSync(inTarget, 'a'.repeat(BLOCK_SIZE));
    expect(await csi.failure('NodeUnpublishVolume', { volume_id: volume, target_path: target })).toMatchObject({ code: 9, details: expect.stringMatching(busy) });
    fs.writeSync(inTarget, 'b'.repeat(BLOCK_SIZE)); // the mount is still the volume's
    fs.closeSync(inTarget);
    await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: target });

    // Opened through the staging path, which pods never see: only the stage is busy.
    const inStaging = fs.openSync(path.join(staging, 'through-staging'), 'w');
    fs.writeSync(inStaging, 'c'.repeat(BLOCK_SIZE)); // in the page cache only: a lazy unmount and a detach would lose it
    expect(await csi.failure('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging })).toMatchObject({ code: 9, details: expect.stringMatching(busy) });
    expect(fs.existsSync(path.join(weftd.dataDir, 'csi', 'attach', volume))).toBe(true); // still attached...
    await csi.call('NodeGetVolumeStats', { volume_id: volume, volume_path: staging }); // ...and staged, on record too
    fs.writeSync(inStaging, 'd'.repeat(BLOCK_SIZE));
    fs.closeSync(inStaging);
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });

    const again = await stageAndPublish(volume, EXT4_WRITER);
    expect(fs.readFileSync(path.join(again, 'through-target'), 'utf8')).toBe('a'.repeat(BLOCK_SIZE) + 'b'.repeat(BLOCK_SIZE));
    expect(fs.readFileSync(path.join(again, 'through-staging'), 'utf8')).toBe('c'.repeat(BLOCK_SIZE) + 'd'.repeat(BLOCK_SIZE));
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a publication on record whose target is not mounted (a publish that failed and could not be undone) does not hold up the unstage', async () => {
    const volume = await createVolume('e2e-leftover', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    expect(spawnSync('umount', [target]).status).toBe(0);
    const { staging } = pathsFor(volume);
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(path.join(weftd.dataDir, 'csi', 'attach', volume))).toBe(false);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a SINGLE_NODE_SINGLE_WRITER publication on record but not mounted does not refuse the next pod its publish', async () => {
    const single = { ...EXT4_WRITER, access_mode: { mode: 'SINGLE_NODE_SINGLE_WRITER' } };
    const volume = await createVolume('e2e-single', 64 * MiB, single);
    const first = await stageAndPublish(volume, single);
    const files = writeFiles(first);
    // What a publish cut short whose undoing failed leaves: on record, not mounted; no unpublish comes for it.
    expect(spawnSync('umount', [first]).status).toBe(0);
    const { staging } = pathsFor(volume);
    const second = path.join(root, 'pods', `${volume}-next`, 'mount');
    await csi.call('NodePublishVolume', { volume_id: volume, staging_target_path: staging, target_path: second, volume_capability: single });
    expectFiles(second, files);
    // While one is mounted, a second writer is still refused.
    const third = path.join(root, 'pods', `${volume}-third`, 'mount');
    expect(await csi.failure('NodePublishVolume', { volume_id: volume, staging_target_path: staging, target_path: third, volume_capability: single })).toMatchObject({
      code: 9,
      details: expect.stringMatching(/SINGLE_NODE_SINGLE_WRITER and already published at .*-next\/mount/),
    });
    await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: second });
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });
    expect(fs.existsSync(first)).toBe(false);
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a stage asked again with other mount flags is refused (ALREADY_EXISTS): its mount would keep the old ones', async () => {
    const volume = await createVolume('e2e-flags', 64 * MiB, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    const stage = { volume_id: volume, staging_target_path: staging, volume_capability: EXT4_WRITER };
    await csi.call('NodeStageVolume', stage);
    const noexec = { ...EXT4_WRITER, mount: { ...EXT4_WRITER.mount, mount_flags: ['noexec'] } };
    expect(await csi.failure('NodeStageVolume', { ...stage, volume_capability: noexec })).toMatchObject({ code: 6, details: expect.stringMatching(/already staged with mount flags \[\]/) });
    await csi.call('NodeStageVolume', stage); // the same again: done already
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test("a staging path or target path that another volume's mount holds is refused, and that mount stays", async () => {
    const [a, b] = [await createVolume('e2e-path-a', 64 * MiB, EXT4_WRITER), await createVolume('e2e-path-b', 64 * MiB, EXT4_WRITER)];
    const { staging } = pathsFor(a);
    const target = await stageAndPublish(a, EXT4_WRITER);
    const files = writeFiles(target);
    const source = () => spawnSync('findmnt', ['--noheadings', '--output', 'SOURCE', '--mountpoint', staging], { encoding: 'utf8' }).stdout.trim();
    const aDevice = source();
    expect(aDevice).toMatch(/^\/dev\//);
    // b asked at a's paths (a CO's bug, or a path reused): refused, nothing of a's touched.
    expect(await csi.failure('NodeStageVolume', { volume_id: b, staging_target_path: staging, volume_capability: EXT4_WRITER })).toMatchObject({
      code: 9,
      details: expect.stringMatching(/already a mount of .*not volume .*e2e-path-b.*stage/),
    });
    expect(source()).toBe(aDevice);
    const bPaths = pathsFor(b);
    await csi.call('NodeStageVolume', { volume_id: b, staging_target_path: bPaths.staging, volume_capability: EXT4_WRITER });
    expect(await csi.failure('NodePublishVolume', { volume_id: b, staging_target_path: bPaths.staging, target_path: target, volume_capability: EXT4_WRITER })).toMatchObject({
      code: 9,
      details: expect.stringMatching(/already a mount of something else/),
    });
    expectFiles(target, files);
    await csi.call('NodeUnstageVolume', { volume_id: b, staging_target_path: bPaths.staging });
    expectFiles(target, files);
    await unpublishAndUnstage(a);
    for (const volume of [a, b]) await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('a publish onto a broken stage is refused, with why: its pod would get I/O errors, or write into the node\'s own disk', async () => {
    const volume = await createVolume('e2e-unmounted', 64 * MiB, EXT4_WRITER);
    const { staging, target } = pathsFor(volume);
    const stage = { volume_id: volume, staging_target_path: staging, volume_capability: EXT4_WRITER };
    await csi.call('NodeStageVolume', stage);
    expect(spawnSync('umount', [staging]).status).toBe(0); // behind weftd's back
    expect(await csi.failure('NodePublishVolume', { ...stage, target_path: target })).toMatchObject({
      code: 9,
      details: expect.stringMatching(/its stage is broken \(.* is no longer mounted\); unstage and stage it again/),
    });
    expect(spawnSync('findmnt', ['--mountpoint', target]).status).not.toBe(0);
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });

    await csi.call('NodeStageVolume', stage);
    const nbdfuse = Number(fs.readFileSync(path.join(weftd.dataDir, 'csi', 'attach', volume, 'nbdfuse.pid'), 'utf8'));
    process.kill(nbdfuse, 'SIGKILL');
    await waitFor(() => liveCommandLine(nbdfuse) === undefined); // dead, reaped or not
    expect(await csi.failure('NodePublishVolume', { ...stage, target_path: target })).toMatchObject({ code: 9, details: expect.stringMatching(/attachment of volume .* is broken/) });
    expect(spawnSync('findmnt', ['--mountpoint', target]).status).not.toBe(0);
    await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging });
    await csi.call('DeleteVolume', { volume_id: volume });
  });

  test('staged again while published, with its attachment broken, it is refused and its publication left in place, also by a restart of weftd', async () => {
    const volume = await createVolume('e2e-broken', 64 * MiB, EXT4_WRITER);
    const target = await stageAndPublish(volume, EXT4_WRITER);
    const { staging } = pathsFor(volume);
    process.kill(Number(fs.readFileSync(path.join(weftd.dataDir, 'csi', 'attach', volume, 'nbdfuse.pid'), 'utf8')), 'SIGKILL');
    const stage = { volume_id: volume, staging_target_path: staging, volume_capability: EXT4_WRITER };
    await waitFor(async () => (await csi.call('NodeGetVolumeStats', { volume_id: volume, volume_path: target })).volume_condition?.abnormal === true);

    const refused = await csi.failure('NodeStageVolume', stage);
    expect(refused).toMatchObject({ code: 9, details: expect.stringMatching(/published at .*attachment of volume .* is broken.*staged again only once those are unpublished/) });
    expect(spawnSync('findmnt', ['--mountpoint', target]).status).toBe(0); // the pod's mount is still there
    // Nor does a restart of weftd tear it down.
    await weftd.restart();
    expect(weftd.logs()).toMatch(/the attachment of an earlier run is broken and still published/);
    expect(spawnSync('findmnt', ['--mountpoint', target]).status).toBe(0);
    expect(await csi.failure('NodeStageVolume', stage)).toMatchObject({ code: 9 });
    await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: target });
    await csi.call('NodeStageVolume', stage); // torn down and staged from the start
    await csi.call('NodePublishVolume', { ...stage, target_path: target });
    fs.writeFileSync(path.join(target, 'after'), 'x');
    await unpublishAndUnstage(volume);
    await csi.call('DeleteVolume', { volume_id: volume });
  });
});
