// What the tests of replicated volumes share: weftd nodes on one etcd, the CLI's JSON, qemu-io and
// fio against an export, and damage done to a copy's pool file behind weftd's back.

import fs from 'node:fs';
import path from 'node:path';
import { NbdClient } from '../../fabric/nbd/client';
import type { VolumeInfo } from '../../fabric/volume/types';
import type { EtcdCluster } from './etcd';
import { waitFor } from './wait-for';
import { makeTempDir, run, startWeftd, type RunResult, type WeftdHandle } from './weftd';

export interface ClusterNodeHandle {
  weftd: WeftdHandle;
  /** The directory of its one pool (class ssd). */
  poolDir: string;
}

/** One weftd per id, each with one pool of poolBytes, on the etcd cluster. */
export async function startNodes(etcd: EtcdCluster, ids: string[], poolBytes: number, extraArgs: string[] = []): Promise<ClusterNodeHandle[]> {
  const nodes: ClusterNodeHandle[] = [];
  for (const id of ids) {
    const poolDir = makeTempDir(`weft-pool-${id}-`);
    const weftd = await startWeftd({ pools: [`ssd:${poolDir}:${poolBytes}`], extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1', ...extraArgs] });
    nodes.push({ weftd, poolDir });
  }
  return nodes;
}

/** The command's output; throws if it failed (qemu tools may exit 0 after an I/O error, so their output is checked too). */
export async function ok(result: Promise<RunResult>, checkOutput = false): Promise<string> {
  const done = await result;
  if (done.code !== 0 || (checkOutput && /error|fail/i.test(done.stdout + done.stderr))) throw new Error(`${done.stdout}${done.stderr}`);
  return done.stdout;
}

/** `weft ARGS --output json` through a node, parsed; throws if it failed. */
export async function weftJson<T>(via: WeftdHandle, args: string[]): Promise<T> {
  const result = await via.weft([...args, '--output', 'json']);
  if (result.code !== 0) throw new Error(`weft ${args.join(' ')} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** qemu-io commands against an NBD export; throws with its output if any fails. */
export async function qemuIo(uri: string, commands: string[], readOnly = false): Promise<string> {
  const args = ['-f', 'raw', ...(readOnly ? ['-r'] : []), ...commands.flatMap((c) => ['-c', c]), uri];
  const result = await run('qemu-io', args, { timeoutMs: 60_000 });
  const out = result.stdout + result.stderr;
  if (result.code !== 0 || /error|fail|mismatch/i.test(out)) throw new Error(`qemu-io ${commands.join('; ')} on ${uri}: ${out}`);
  return out;
}

/**
 * Changes one byte of the block that holds `content` (4 KiB, found once in the pool's file), as a
 * disk that went bad would: the block then fails its checksum on that copy.
 */
export function damageBlock(poolDir: string, content: Buffer): void {
  const poolFile = path.join(poolDir, 'weft-pool-ssd.img');
  const pool = fs.readFileSync(poolFile);
  const at = pool.indexOf(content);
  if (at < 0 || pool.lastIndexOf(content) !== at) throw new Error(`the content is in ${poolFile} ${at < 0 ? 'nowhere' : 'more than once'}`);
  const fd = fs.openSync(poolFile, 'r+');
  try {
    fs.writeSync(fd, Buffer.from([content[1000] ^ 0xff]), 0, 1, at + 1000);
  } finally {
    fs.closeSync(fd);
  }
}

export interface FioJob {
  error: number;
  write: { io_bytes: number };
  read: { io_bytes: number };
}

/** fio writes 24 MiB at random from 40 MiB on through uri (a volume of 64 MiB or more), then reads it all back checking crc32c. */
export async function fioVerify(uri: string, dir: string): Promise<FioJob> {
  const output = path.join(dir, `fio-${Date.now()}.json`);
  const result = await run('fio', [
    '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--offset=40M',
    '--size=24M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json', `--output=${output}`,
  ], { timeoutMs: 120_000 });
  if (result.code !== 0) throw new Error(`fio failed (${result.code}): ${result.stderr}`);
  return (JSON.parse(fs.readFileSync(output, 'utf8')) as { jobs: FioJob[] }).jobs[0];
}

/** The volume as `via` shows it once every replica is in sync at an epoch above `above`. */
export async function settled(via: WeftdHandle, name: string, above = 0): Promise<VolumeInfo> {
  let shown: VolumeInfo | undefined;
  await waitFor(
    async () => {
      shown = await weftJson<VolumeInfo>(via, ['volume', 'show', name]);
      const r = shown.replication;
      return r !== undefined && r.epoch > above && r.replicas.every((c) => c.state === 'in-sync');
    },
    60_000,
    200,
  );
  return shown as VolumeInfo;
}

/** What one node's own copy holds, read below the routing (the replication export at the copy's epoch). */
export async function copyUri(node: WeftdHandle, name: string): Promise<string> {
  const epoch = (await weftJson<VolumeInfo>(node, ['volume', 'show', name])).epoch;
  return node.nbdUri(`${name}~epoch=${epoch}`);
}

/** lengthBytes at offsetBytes of one node's own copy of volume, read below the routing at epoch. */
export async function copyBytes(node: WeftdHandle, volume: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
  const client = await NbdClient.connect({ host: '127.0.0.1', port: node.nbdPort, exportName: `${volume}~epoch=${epoch}` });
  try {
    return await client.read(offsetBytes, lengthBytes);
  } finally {
    client.close();
  }
}
