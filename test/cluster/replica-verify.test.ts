// `weft volume verify` of a replicated volume compares the copies on the primary and repairs them:
// a block damaged on a copy's disk gets the content of the other copy, blocks that differ on a
// replica (written to its copy behind the primary's back) are made equal to the primary's, a block
// no copy reads good fails the command, client writes go on meanwhile, a caller that goes away stops
// it, and a copy that is out is skipped. The repairs are on the replica's disk: after
// a failover it serves the original data. Two weftd processes on a real etcd, the real CLI.

import * as grpc from '@grpc/grpc-js';
import { WeftClient, type WeftApiError } from '../../fabric/api/client';
import type { VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { damageBlock, fioVerify, ok, qemuIo, startNodes, weftJson, type ClusterNodeHandle } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;
const BLOCKS = (64 * MiB) / 4096;

afterAll(cleanupAll);

describe('verify of a replicated volume', () => {
  let n1: ClusterNodeHandle;
  let n2: ClusterNodeHandle;

  beforeAll(async () => {
    const etcd = await startEtcd(1);
    [n1, n2] = await startNodes(etcd, ['n1', 'n2'], 128 * MiB);
    await ok(n1.weftd.weft(['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--locality', 'n1']));
    await waitFor(async () => (await weftJson<VolumeInfo>(n1.weftd, ['volume', 'show', 'v'])).replication!.epoch === 1, 30_000, 200);
  });

  /** n2's own copy, below the routing to the primary (the export the primary replicates to). */
  const replicaCopy = () => n2.weftd.nbdUri('v~epoch=1');

  test("repairs blocks damaged on either copy's disk and blocks that differ on the replica, and reports them per copy", async () => {
    await qemuIo(n2.weftd.nbdUri('v'), ['write -P 0x42 64k 4k', 'write -P 0x43 96k 4k', 'write -P 0x11 128k 8k', 'flush']);
    // A block damaged on the primary's disk; and the replica goes wrong behind the primary's back:
    // a block damaged on its disk, one block rewritten on its copy, one written where the primary has a hole.
    damageBlock(n1.poolDir, Buffer.alloc(4096, 0x43));
    damageBlock(n2.poolDir, Buffer.alloc(4096, 0x42));
    await qemuIo(replicaCopy(), ['write -P 0x55 132k 4k', 'write -P 0x66 1M 4k', 'flush']);
    await expect(qemuIo(replicaCopy(), ['read 64k 4k'], true)).rejects.toThrow(/error/i);
    await qemuIo(replicaCopy(), ['read -P 0x11 128k 4k', 'read -P 0x55 132k 4k', 'read -P 0x66 1M 4k'], true);

    // Asked of the replica's node: the primary runs it.
    const verified = await n2.weftd.weft(['volume', 'verify', 'v']);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.stdout.split('\n')).toEqual([
      `verified volume "v": ${BLOCKS} blocks checked, 4 repaired, no bad blocks`,
      'NODE          COMPARED  REPAIRED (CHECKSUM)  REPAIRED (MISMATCH)',
      `n1 (primary)     ${BLOCKS}                    1                    0`,
      `n2               ${BLOCKS}                    1                    2`,
      '',
    ]);
    // The replica's copy holds the primary's data again: the hole a hole again.
    await qemuIo(replicaCopy(), ['read -P 0x42 64k 4k', 'read -P 0x43 96k 4k', 'read -P 0x11 128k 8k', 'read -P 0 1M 4k'], true);
    await qemuIo(n1.weftd.nbdUri('v~epoch=1'), ['read -P 0x43 96k 4k'], true);

    // A second verify finds nothing more to repair.
    const again = await weftJson<VerifyReport>(n1.weftd, ['volume', 'verify', 'v']);
    expect(again).toEqual({
      volume: 'v',
      checkedBlocks: BLOCKS,
      badBlockOffsets: [],
      replicas: [
        { node: 'n1', comparedBlocks: BLOCKS, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 0 },
        { node: 'n2', comparedBlocks: BLOCKS, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 0 },
      ],
      skippedReplicas: [],
    });
  });

  test('a block that no copy reads good is reported and makes the command fail', async () => {
    await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x44 256k 4k', 'flush']);
    damageBlock(n1.poolDir, Buffer.alloc(4096, 0x44));
    damageBlock(n2.poolDir, Buffer.alloc(4096, 0x44));
    const verified = await n1.weftd.weft(['volume', 'verify', 'v']);
    expect(verified.code).toBe(1);
    expect(verified.stderr).toBe('weft: volume "v" has 1 bad block\n');
    expect(verified.stdout).toMatch(/^verified volume "v": \d+ blocks checked, 0 repaired, 1 bad block\nbad block at offset 262144 \(no copy reads it good\)\n/);
    // A client's write makes it good again.
    await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x45 256k 4k', 'flush']);
    expect((await n1.weftd.weft(['volume', 'verify', 'v'])).code).toBe(0);
  });

  test('client writes go on during a verify, which finds the copies equal', async () => {
    const fio = fioVerify(n2.weftd.nbdUri('v'), makeTempDir('weft-fio-'));
    let finished = false;
    void fio.finally(() => (finished = true)).catch(() => undefined);
    let runs = 0;
    do {
      const report = await weftJson<VerifyReport>(n1.weftd, ['volume', 'verify', 'v']);
      expect(report.badBlockOffsets).toEqual([]);
      expect(report.replicas!.map((r) => [r.node, r.checksumRepairedBlocks, r.mismatchRepairedBlocks])).toEqual([['n1', 0, 0], ['n2', 0, 0]]);
      runs++;
    } while (!finished);
    const job = await fio;
    expect(job.error).toBe(0);
    expect(job.read.io_bytes).toBe(24 * MiB);
    console.log(`${runs} verifies of the copies ran while fio wrote and read back 24 MiB`);
  });

  test("a verify whose caller goes away stops on the primary, between windows, and lets go of the volume", async () => {
    await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x47 32M 32M', 'flush']);
    const client = new WeftClient(`127.0.0.1:${n2.weftd.apiPort}`);
    try {
      // Asked of the replica's node, which asks the primary: the cancel goes the same way.
      const stop = new AbortController();
      const ended = await client.verifyVolume('v', () => stop.abort(), stop.signal).then(
        () => 'ran to its end',
        (err: WeftApiError) => err.code,
      );
      expect(ended).toBe(grpc.status.CANCELLED);
    } finally {
      client.close();
    }
    await waitFor(async () => /call stopped: its caller went away/.test(n1.weftd.logs()), 10_000, 50);
    expect(n1.weftd.logs()).toMatch(/the verify was cancelled by its caller after \d+ of 16384 blocks/);
    // Nothing holds it now: the next verify runs, and finds the copies equal.
    const again = await weftJson<VerifyReport>(n2.weftd, ['volume', 'verify', 'v']);
    expect(again.replicas!.map((r) => [r.node, r.comparedBlocks, r.checksumRepairedBlocks, r.mismatchRepairedBlocks])).toEqual([['n1', BLOCKS, 0, 0], ['n2', BLOCKS, 0, 0]]);
  });

  test('the repairs are on the replica: after a failover it serves the original data, and the copy that is out is skipped', async () => {
    await n1.weftd.kill9();
    await waitFor(async () => (await weftJson<VolumeInfo>(n2.weftd, ['volume', 'show', 'v'])).replication!.primary === 'n2', 60_000, 200);
    // Its own copy alone: a block still damaged there would read as an error, with no peer to repair it from.
    await qemuIo(n2.weftd.nbdUri('v'), ['read -P 0x42 64k 4k', 'read -P 0x11 128k 8k', 'read -P 0 1M 4k'], true);

    const verified = await weftJson<VerifyReport>(n2.weftd, ['volume', 'verify', 'v']);
    expect(verified.replicas).toEqual([{ node: 'n2', comparedBlocks: BLOCKS, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 0 }]);
    expect(verified.skippedReplicas).toEqual([{ node: 'n1', reason: 'it is out: a resync brings it in sync, not a verify' }]);
    const text = await n2.weftd.weft(['volume', 'verify', 'v']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('\nskipped n1: it is out: a resync brings it in sync, not a verify\n');
  });
});
