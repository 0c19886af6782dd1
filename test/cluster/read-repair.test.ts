// A block damaged on the primary's disk (behind weftd's back) fails its checksum there; the primary
// serves it from an in-sync replica and rewrites its own copy, so the client sees good data and a
// verify of the primary's copy afterwards finds nothing bad. Two weftd processes on a real etcd.

import fs from 'node:fs';
import path from 'node:path';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

/** The command's output; throws if it failed (qemu tools may exit 0 after an I/O error, so their output is checked too). */
async function ok(result: Promise<{ code: number | null; stdout: string; stderr: string }>, checkOutput = false): Promise<string> {
  const done = await result;
  if (done.code !== 0 || (checkOutput && /error|fail/i.test(done.stdout + done.stderr))) throw new Error(`${done.stdout}${done.stderr}`);
  return done.stdout;
}

test('a block that fails its checksum on the primary is read from a replica and rewritten', async () => {
  const etcd = await startEtcd(1);
  const pools: string[] = [];
  const nodes: WeftdHandle[] = [];
  for (const id of ['n1', 'n2']) {
    pools.push(makeTempDir(`weft-pool-${id}-`));
    nodes.push(await startWeftd({ pools: [`ssd:${pools.at(-1)}:${64 * MiB}`], extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1'] }));
  }
  await ok(nodes[0].weft(['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2', '--locality', 'n1']));
  await waitFor(async () => (JSON.parse(await ok(nodes[0].weft(['volume', 'show', 'v', '--output', 'json']))) as VolumeInfo).replication!.epoch === 1, 30_000, 200);

  const marker = 'weft-read-repair-marker';
  const block = path.join(makeTempDir('weft-marker-'), 'marker.raw');
  const content = Buffer.concat([Buffer.from(marker), Buffer.alloc(4096 - marker.length, 0x42)]);
  fs.writeFileSync(block, content);
  await ok(run('qemu-io', ['-f', 'raw', '-c', `write -s ${block} 64k 4k`, '-c', 'flush', nodes[1].nbdUri('v')]), true);

  // Damage the primary's copy on disk.
  const poolFile = path.join(pools[0], 'weft-pool-ssd.img');
  const at = fs.readFileSync(poolFile).indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const fd = fs.openSync(poolFile, 'r+');
  fs.writeSync(fd, Buffer.from([0x00]), 0, 1, at + 1000);
  fs.closeSync(fd);
  const badBefore = await nodes[0].weft(['volume', 'verify', 'v']);
  expect(badBefore.code).toBe(1);
  expect(badBefore.stdout).toMatch(/bad block at offset 65536/);

  // Read through either node: good data, from the replica.
  const copy = path.join(path.dirname(block), 'read.raw');
  await ok(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', nodes[0].nbdUri('v'), copy]), true);
  expect(fs.readFileSync(copy).subarray(64 * 1024, 68 * 1024)).toEqual(content);
  // And the primary's copy was rewritten.
  const badAfter = await nodes[0].weft(['volume', 'verify', 'v']);
  expect(badAfter.stdout).toMatch(/no bad blocks/);
  expect(badAfter.code).toBe(0);
});
