// Copies on a full or failing disk while the other copies are healthy (issue 9, "a full or failing
// disk"). A primary whose own disk fails hands the volume over, and a client writing through the
// primary's own node sees no error:
// - its pool fills up for real (another volume takes the room): the copy that had room serves every
//   acknowledged write from then on, and the old copy, whose resyncs fail for want of room, is
//   replaced on a third node once --replica-timeout has run;
// - its pool's disk fails every read and write with EIO (nbdkit's error filter under nbdfuse): the
//   replica serves, and once the disk works again the old copy comes back with a full copy; the
//   same for a read that the disk fails (the page cache dropped first, so that it reaches the disk).
// - its metadata disk (the data dir: journal, activity log) fails, and ext4 turns it read-only:
//   the replica serves, as above.
// A replica's disk that fails instead: the replica is taken out, the client sees no error, and it
// catches up once the disk works again, even after failing past --replica-timeout with no node to
// replace it on. weftd processes on a real etcd.

import fs from 'node:fs';
import type { PoolInfo, VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { NbdClient } from '../../fabric/nbd/client';
import { startEtcd } from '../helpers/etcd';
import { copyUri, qemuIo, settled, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { startFailingDevice, startFailingFilesystem, type FailingDevice, type FailingFilesystem } from '../helpers/nbdkit-device';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

const disks: FailingDevice[] = [];

afterAll(async () => {
  for (const disk of disks) await disk.unmount(); // lazily: each is gone once weftd, killed next, lets go of it
  await cleanupAll();
});

/** n1 with its pool on a disk that fails on demand, n2 with a healthy one; volume v (32 MiB) on both, its primary on `primary`. */
async function onFailingDisk(primary = 'n1'): Promise<{ disk: FailingDevice; n1: WeftdHandle; n2: WeftdHandle }> {
  const etcd = await startEtcd(1);
  const disk = await startFailingDevice(makeTempDir('weft-failing-'), 256 * MiB);
  disks.push(disk);
  const n1 = await startNode(etcd.storeSpec, 'n1', disk.file);
  const n2 = await startNode(etcd.storeSpec, 'n2', 256 * MiB);
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '32MiB', '--replicas', '2', '--locality', primary]);
  expect((await settled(n1, 'v')).replication?.primary).toBe(primary);
  return { disk, n1, n2 };
}

/** A weftd with one ssd pool: a directory of its own with poolBytes, or the member given. */
async function startNode(storeSpec: string, id: string, poolBytes: number | string): Promise<WeftdHandle> {
  const pool = typeof poolBytes === 'string' ? `ssd:${poolBytes}` : `ssd:${makeTempDir(`weft-pool-${id}-`)}:${poolBytes}`;
  return startWeftd({ pools: [pool], extraArgs: ['--store', storeSpec, '--node-id', id, '--advertise', '127.0.0.1', '--replica-timeout', '3'] });
}

/** Each copy as node:state, in node order. */
const copies = (info: VolumeInfo) => (info.replication?.replicas ?? []).map((r) => `${r.node}:${r.state}`).sort().join(',');

/**
 * Through n1, whose copy (the primary's or a replica's) is on the disk that fails: a write, then the
 * disk fails (fail), then more writes and a flush, which succeed: n2 serves, n1's copy is out, and
 * every acknowledged write reads back through both nodes and on n2's own copy. Returns the reads
 * that check it.
 */
async function writeThroughFailingCopy(n1: WeftdHandle, n2: WeftdHandle, fail: () => void): Promise<string[]> {
  await qemuIo(n1.nbdUri('v'), ['write -P 0x11 0 4M', 'flush']);
  fail();
  await qemuIo(n1.nbdUri('v'), ['write -P 0x55 1M 8M', 'flush']);
  const after = await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']);
  expect(after.replication?.primary).toBe('n2');
  expect(copies(after)).toMatch(/^n1:(out|resyncing),n2:in-sync$/);
  const expected = ['read -P 0x11 0 1M', 'read -P 0x55 1M 8M', 'read -P 0 9M 23M'];
  for (const uri of [n1.nbdUri('v'), n2.nbdUri('v'), await copyUri(n2, 'v')]) await qemuIo(uri, expected, true);
  return expected;
}

/**
 * n1's pool fills up under volume v (48 MiB, 2 copies, its primary on n1): the copy with room (n2,
 * on a node named n2 or n3) serves it at epoch 2, n1's copy is out and held open, and n3 is the spare.
 */
async function primaryPoolFull(snapshot?: string): Promise<{ n1: WeftdHandle; n2: WeftdHandle; n3: WeftdHandle; held: NbdClient }> {
  const etcd = await startEtcd(1);
  const n1 = await startNode(etcd.storeSpec, 'n1', 64 * MiB);
  const others = [await startNode(etcd.storeSpec, 'n2', 256 * MiB), await startNode(etcd.storeSpec, 'n3', 256 * MiB)];
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '48MiB', '--replicas', '2', '--locality', 'n1']);
  const created = await settled(n1, 'v');
  expect(created.replication?.primary).toBe('n1');
  const n2 = others.find((n) => created.replication?.replicas.some((r) => r.node === n.nodeId)) as WeftdHandle; // the replica
  const n3 = others.find((n) => n !== n2) as WeftdHandle; // the spare
  await qemuIo(n1.nbdUri('v'), ['write -P 0x11 0 4M', 'flush']);
  if (snapshot) await weftJson(n1, ['snapshot', 'create', 'v', snapshot]);

  // A volume of n1 alone takes most of what is left in its pool.
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'filler', '--size', '56MiB']);
  await qemuIo(n1.nbdUri('filler'), ['write -P 0x22 0 52M', 'flush']);

  // More than n1 has room for: without the hand-over this fails with "No space left on device".
  await qemuIo(n1.nbdUri('v'), ['write -P 0x33 4M 24M', 'flush']);

  const after = await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']);
  expect(after.replication?.primary).toBe(n2.nodeId);
  expect(after.replication?.epoch).toBe(2);
  const n1Copy = after.replication?.replicas.find((r) => r.node === 'n1');
  expect(n1Copy?.state).not.toBe('in-sync');
  // n1's copy, held open below the routing (as by a primary's connection that does not close) from
  // before it can be replaced (at the epoch of the primary that serves now): it is not deleted then.
  const held = await NbdClient.connect({ host: '127.0.0.1', port: n1.nbdPort, exportName: `v~epoch=${after.replication?.epoch}` });
  return { n1, n2, n3, held };
}

test('the primary\'s pool full: the volume moves to the replica with room, the client sees no error, nothing acknowledged is lost; the full copy is replaced elsewhere', async () => {
  const { n1, n2, n3, held } = await primaryPoolFull();

  // Every acknowledged write, through both nodes, and on n2's own copy below the routing.
  const expected = ['read -P 0x11 0 4M', 'read -P 0x33 4M 24M', 'read -P 0 28M 20M'];
  await qemuIo(n1.nbdUri('v'), expected, true);
  await qemuIo(n2.nbdUri('v'), expected, true);
  await qemuIo(await copyUri(n2, 'v'), expected, true);
  // Writes go on, to the new primary.
  await qemuIo(n1.nbdUri('v'), ['write -P 0x44 28M 1M', 'flush', 'read -P 0x44 28M 1M']);

  // n1's copy cannot be resynced (no room): once --replica-timeout has run, it is replaced on n3.
  // Held open, n1's copy is not deleted, and is tried again later (it was left until n1's next
  // start); n1 serves the volume meanwhile, forwarded to the primary (which failed: "no export named").
  const unserved: string[] = [];
  let shown = '';
  await waitFor(
    async () => {
      const served = await run('nbdinfo', ['--size', n1.nbdUri('v')]);
      if (served.code !== 0) unserved.push(served.stderr.trim());
      shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']));
      return shown === `${n2.nodeId}:in-sync,${n3.nodeId}:in-sync` && /could not delete a copy its volume no longer names/.test(n1.logs());
    },
    60_000,
    100,
  ).catch(() => undefined);
  expect(shown).toBe(`${n2.nodeId}:in-sync,${n3.nodeId}:in-sync`);
  expect(n1.logs()).toMatch(/could not delete a copy its volume no longer names/);
  // Its blocks are freed meanwhile: what n1's full pool holds is the filler's (it held v's 28 MiB too).
  const filler = await weftJson<VolumeInfo>(n1, ['volume', 'show', 'filler']);
  await waitFor(async () => (await weftJson<PoolInfo[]>(n1, ['pool', 'list']))[0].usedBytes <= filler.allocatedBytes + MiB, 30_000, 200);
  await qemuIo(n1.nbdUri('v'), ['write -P 0x55 29M 1M', 'flush', 'read -P 0x44 28M 1M', 'read -P 0x55 29M 1M']);
  expect(unserved).toEqual([]);
  await qemuIo(await copyUri(n3, 'v'), [...expected.slice(0, 2), 'read -P 0x44 28M 1M', 'read -P 0x55 29M 1M'], true);

  // Deleted and made again, smaller, while n1 still holds the old copy: n1 serves the new volume,
  // forwarded, not the old copy's stack (which the new record made serve again: 48 MiB).
  await weftJson(n2, ['volume', 'delete', 'v']);
  await weftJson<VolumeInfo>(n2, ['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2']);
  await settled(n2, 'v');
  await qemuIo(n2.nbdUri('v'), ['write -P 0x77 0 1M', 'flush']);
  expect((await run('nbdinfo', ['--size', n1.nbdUri('v')])).stdout.trim()).toBe(String(16 * MiB));
  await qemuIo(n1.nbdUri('v'), ['read -P 0x77 0 1M', 'read -P 0 1M 15M'], true);

  // Let go of, the old copy is deleted at the next try (5 s after the first, then twice as long each time), and n1 serves on.
  held.close();
  await waitFor(async () => /deleted a copy its volume no longer names/.test(n1.logs()), 90_000, 200);
  await qemuIo(n1.nbdUri('v'), ['read -P 0x77 0 1M'], true);
}, 240_000);

test('a replaced copy not deleted yet (held open) is reused by the next replacement on its node, resynced in full', async () => {
  const { n1, n2, n3, held } = await primaryPoolFull();
  await waitFor(async () => copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])) === `${n2.nodeId}:in-sync,${n3.nodeId}:in-sync` && /could not delete a copy/.test(n1.logs()), 60_000, 200);
  // Room on n1 again, and n3 gone past --replica-timeout: n1, where the old copy still is (its
  // blocks freed), is the only node left for the replacement. The copy is reused, with the absence
  // log that forget() had let go of, and gets a full copy: every block reads as the primary's.
  await weftJson(n1, ['volume', 'delete', 'filler']);
  await n3.kill9();
  let shown = '';
  await waitFor(async () => (shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))) === `n1:in-sync,${n2.nodeId}:in-sync`, 60_000, 250).catch(() => undefined);
  expect(shown).toBe(`n1:in-sync,${n2.nodeId}:in-sync`);
  held.close();
  await qemuIo(await copyUri(n1, 'v'), ['read -P 0x11 0 4M', 'read -P 0x33 4M 24M', 'read -P 0 28M 20M'], true);
});

test('a held copy of a deleted volume is not reused for a new volume of the name: its replacement there waits for the drop, and gets a copy of its own', async () => {
  const { n1, n2, n3, held } = await primaryPoolFull();
  await waitFor(async () => copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])) === `${n2.nodeId}:in-sync,${n3.nodeId}:in-sync` && /could not delete a copy/.test(n1.logs()), 60_000, 200);
  // Deleted, and made again smaller under the name, on n2 and n3 (n1's pool is full), while n1 still
  // holds the old volume's copy (48 MiB, at epoch 2).
  await weftJson(n2, ['volume', 'delete', 'v']);
  await weftJson<VolumeInfo>(n2, ['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2', '--locality', n2.nodeId]);
  expect(copies(await settled(n2, 'v'))).toBe(`${n2.nodeId}:in-sync,${n3.nodeId}:in-sync`);
  await qemuIo(n2.nbdUri('v'), ['write -P 0x77 0 1M', 'flush']);
  // Room on n1, and n3 gone: n1 is the only node for the new volume's replacement. Reused, the old
  // copy would refuse the new primary (its epoch, 1, is below the copy's) and stay out.
  await weftJson(n1, ['volume', 'delete', 'filler']);
  const logged = n2.logs().length;
  await n3.kill9();
  // The primary's first try of the replacement on n1 fails while the old copy is held there.
  await waitFor(async () => n2.logs().slice(logged).includes('volume action failed'), 60_000, 200);
  held.close();
  let shown = '';
  await waitFor(async () => (shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))) === `n1:in-sync,${n2.nodeId}:in-sync`, 90_000, 250).catch(() => undefined);
  expect(shown).toBe(`n1:in-sync,${n2.nodeId}:in-sync`);
  expect((await qemuIo(await copyUri(n1, 'v'), ['length'], true)).trim()).toBe('16 MiB');
  await qemuIo(await copyUri(n1, 'v'), ['read -P 0x77 0 1M', 'read -P 0 1M 15M'], true);
  expect((await weftJson<VolumeInfo>(n1, ['volume', 'show', 'v'])).sizeBytes).toBe(16 * MiB);
}, 240_000);

test("a replaced copy kept by a client of its node (a pod's attachment) follows a resize: that client and the node see the new size and the primary's data past the old end; its own snapshot is neither served nor kept, and n1 lists the volume's", async () => {
  const { n1, n2, n3, held } = await primaryPoolFull('s0');
  held.close(); // only the client on top of the stack keeps n1's copy here
  // As a pod's nbdfuse attachment is: through the window that lets an attached volume grow.
  const pod = await NbdClient.connect({ host: '127.0.0.1', port: n1.nbdPort, exportName: 'v~growable' });
  try {
    expect((await pod.read(4 * MiB, 4096)).every((b) => b === 0x33)).toBe(true);
    // n1's copy is replaced on n3; in use, it is not deleted.
    await waitFor(async () => copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])) === `${n2.nodeId}:in-sync,${n3.nodeId}:in-sync` && /could not delete a copy/.test(n1.logs()), 60_000, 200);
    // The old copy's snapshot is not served on n1 (the volume's is on n2, and a delete there would not reach n1's).
    await qemuIo(n2.nbdUri('v@s0'), ['read -P 0x11 0 4M'], true);
    const stale = await run('nbdinfo', ['--size', n1.nbdUri('v@s0')]);
    expect(stale.code).not.toBe(0);
    expect((await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${n1.nbdPort}`])).stdout).not.toContain('v@s0');
    // Nor does it hold blocks in n1's full pool: emptied, and its snapshot deleted, while the pod keeps it.
    const filler = await weftJson<VolumeInfo>(n1, ['volume', 'show', 'filler']);
    await waitFor(async () => (await weftJson<PoolInfo[]>(n1, ['pool', 'list']))[0].usedBytes <= filler.allocatedBytes + MiB, 30_000, 200);
    expect(n1.logs()).toMatch(/deleted the snapshot of a replaced copy/);
    // n1 lists the volume's snapshots (its primary's), not what its old copy held.
    expect((await weftJson<{ name: string }[]>(n1, ['snapshot', 'list', 'v'])).map((snap) => snap.name)).toEqual(['s0']);
    await weftJson(n2, ['snapshot', 'create', 'v', 's1']);
    expect((await n2.weft(['snapshot', 'delete', 'v@s0'])).code).toBe(0);
    expect((await weftJson<{ name: string }[]>(n1, ['snapshot', 'list', 'v'])).map((snap) => snap.name)).toEqual(['s1']);
    expect((await weftJson<{ volume: string; name: string }[]>(n1, ['snapshot', 'list'])).filter((snap) => snap.volume === 'v').map((snap) => snap.name)).toEqual(['s1']);
    await weftJson<VolumeInfo>(n2, ['volume', 'resize', 'v', '--size', '64MiB']);
    await qemuIo(n2.nbdUri('v'), ['write -P 0x66 56M 1M', 'flush']);
    // n1 answers with the volume's size (NodeExpandVolume grows the pod's device to it), not its old copy's (48 MiB).
    await waitFor(async () => (await weftJson<VolumeInfo>(n1, ['volume', 'show', 'v'])).sizeBytes === 64 * MiB, 10_000, 100);
    // Past the old end, the pod reads what the primary holds, not zeroes.
    expect((await pod.read(56 * MiB, 4096)).every((b) => b === 0x66)).toBe(true);
    await pod.write(60 * MiB, Buffer.alloc(4096, 0x67), true);
    await qemuIo(n2.nbdUri('v'), ['read -P 0x67 60M 4k', 'read -P 0x33 4M 24M'], true);
    expect((await run('nbdinfo', ['--size', n1.nbdUri('v')])).stdout.trim()).toBe(String(64 * MiB));
  } finally {
    pod.close();
  }
});

test("a replaced copy whose snapshot a client still reads is emptied all the same; the snapshot goes once the client lets go, then the copy", async () => {
  const { n1, n2, n3, held } = await primaryPoolFull('s0');
  const reader = await NbdClient.connect({ host: '127.0.0.1', port: n1.nbdPort, exportName: 'v@s0' });
  const filler = await weftJson<VolumeInfo>(n1, ['volume', 'show', 'filler']);
  const used = async () => (await weftJson<PoolInfo[]>(n1, ['pool', 'list']))[0].usedBytes;
  try {
    await waitFor(async () => copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])) === `${n2.nodeId}:in-sync,${n3.nodeId}:in-sync` && /could not delete a copy/.test(n1.logs()), 60_000, 200);
    // Emptied: n1's pool holds the filler's blocks and the snapshot's (4 MiB), not the copy's 24 MiB more.
    await waitFor(async () => (await used()) <= filler.allocatedBytes + 5 * MiB, 30_000, 200);
    expect((await reader.read(0, 4096)).every((b) => b === 0x11)).toBe(true);
    expect(n1.logs()).not.toMatch(/deleted the snapshot of a replaced copy/);
  } finally {
    reader.close();
  }
  held.close();
  await waitFor(async () => /deleted the snapshot of a replaced copy/.test(n1.logs()) && /deleted a copy its volume no longer names/.test(n1.logs()), 90_000, 200);
  await waitFor(async () => (await used()) <= filler.allocatedBytes + MiB, 30_000, 200);
});

test('the primary\'s disk fails every write: the replica serves without a client error; the disk back, the old copy is in sync again', async () => {
  const { disk, n1, n2 } = await onFailingDisk();
  const expected = await writeThroughFailingCopy(n1, n2, () => disk.fail(true));

  // The disk works again: n1's copy, diverged, is brought back in step with a full copy.
  disk.fail(false);
  let shown = '';
  await waitFor(async () => (shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))) === 'n1:in-sync,n2:in-sync', 60_000, 250).catch(() => undefined);
  expect(shown).toBe('n1:in-sync,n2:in-sync');
  await qemuIo(await copyUri(n1, 'v'), expected, true);
});

test('the primary\'s disk fails a read: the read is served by the replica, which takes over', async () => {
  const { disk, n1, n2 } = await onFailingDisk();
  await qemuIo(n1.nbdUri('v'), ['write -P 0x66 0 4M', 'flush']);
  // What was written is in the page cache, clean since the flush: dropped, the read reaches the disk.
  await run('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
  disk.fail(true);
  await qemuIo(n1.nbdUri('v'), ['read -P 0x66 0 4M'], true);
  expect((await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])).replication?.primary).toBe('n2');
});

test('a replica\'s disk fails every write: taken out, the client sees no error; the disk back, it catches up', async () => {
  const { disk, n1, n2 } = await onFailingDisk('n2');
  const expected = await writeThroughFailingCopy(n1, n2, () => disk.fail(true));
  // Past --replica-timeout (3 s) of failing resyncs, with no third node to replace the copy on:
  // the resyncs must go on, so that the copy comes back once its disk does.
  await new Promise((resolve) => setTimeout(resolve, 4000));

  disk.fail(false);
  let shown = '';
  await waitFor(async () => (shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))) === 'n1:in-sync,n2:in-sync', 60_000, 250).catch(() => undefined);
  expect(shown).toBe('n1:in-sync,n2:in-sync');
  await qemuIo(await copyUri(n1, 'v'), expected, true);
  await qemuIo(await copyUri(n2, 'v'), expected, true);
});

test('a verify whose repair of a replica fails on its disk takes the replica out owing that window; the disk back, its resync repairs it', async () => {
  const { disk, n1, n2 } = await onFailingDisk('n2');
  await qemuIo(n2.nbdUri('v'), ['write -P 0x66 1M 4k', 'flush']);
  // n1's copy differs at 1M (written below the primary's routing), so the verify rewrites it there.
  await qemuIo(await copyUri(n1, 'v'), ['write -P 0x77 1M 4k', 'flush']);
  disk.fail(true);
  const verified = await weftJson<VerifyReport>(n2, ['volume', 'verify', 'v']);
  expect(verified.skippedReplicas).toEqual([{ node: 'n1', reason: expect.stringContaining('it failed during the verify') }]);
  // Not left in sync with what the verify could not repair.
  expect(copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))).toMatch(/^n1:(out|resyncing),n2:in-sync$/);

  disk.fail(false);
  let shown = '';
  await waitFor(async () => (shown = copies(await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']))) === 'n1:in-sync,n2:in-sync', 60_000, 250).catch(() => undefined);
  expect(shown).toBe('n1:in-sync,n2:in-sync');
  await qemuIo(await copyUri(n1, 'v'), ['read -P 0x66 1M 4k'], true);
});

/** As onFailingDisk, with n1's metadata (its data dir) on the disk that fails instead of its pool; fn runs, then n1 and the disk are stopped. */
async function withFailingMetadataDisk(primary: string, fn: (disk: FailingFilesystem, n1: WeftdHandle, n2: WeftdHandle) => Promise<void>): Promise<void> {
  const etcd = await startEtcd(1);
  const metadataDisk = await startFailingFilesystem(makeTempDir('weft-failing-fs-'), 256 * MiB);
  let n1: WeftdHandle | undefined;
  try {
    n1 = await startWeftd({
      dataDir: metadataDisk.dir,
      pools: [`ssd:${makeTempDir('weft-pool-n1-')}:${256 * MiB}`],
      extraArgs: ['--store', etcd.storeSpec, '--node-id', 'n1', '--advertise', '127.0.0.1', '--replica-timeout', '3'],
    });
    const n2 = await startNode(etcd.storeSpec, 'n2', 256 * MiB);
    await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '32MiB', '--replicas', '2', '--locality', primary]);
    expect((await settled(n1, 'v')).replication?.primary).toBe(primary);
    await fn(metadataDisk, n1, n2);
  } finally {
    await n1?.stop(); // before the unmount: weftd holds files there open
    await metadataDisk.unmount();
  }
}

test('the primary\'s metadata disk (its data dir) fails: the replica serves without a client error, nothing acknowledged is lost', async () => {
  await withFailingMetadataDisk('n1', async (metadataDisk, n1, n2) => {
    // ext4 turns read-only at its first failed write: the journal and the activity log cannot be written.
    await writeThroughFailingCopy(n1, n2, () => metadataDisk.fail(true));
  });
});

test('a replica\'s metadata disk fails: taken out, the client writing through that node sees no error', async () => {
  await withFailingMetadataDisk('n2', async (metadataDisk, n1, n2) => {
    await writeThroughFailingCopy(n1, n2, () => metadataDisk.fail(true));
  });
});
