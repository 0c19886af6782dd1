// What the replicated-volume tests ask of a cluster of weftd: the CLI's JSON answers, qemu-io
// against an export, a volume once every copy is in sync, and one node's own copy as an export.

import type { VolumeInfo } from '../../fabric/volume/types';
import { waitFor } from './wait-for';
import { run, type WeftdHandle } from './weftd';

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
