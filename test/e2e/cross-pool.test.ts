// A clone in another pool than its snapshot, the way a user makes and checks one: real weftd with
// an hdd and an ssd pool, the weft CLI, qemu-io and qemu-img over NBD, and `weft pool list` for
// where the space goes as the clone is written, reverted and deleted.

import type { PoolInfo, VolumeInfo } from '../../fabric/volume/types';
import { cleanupAll, makeTempDir, run, type RunResult, startWeftd, type WeftdHandle } from '../helpers/weftd';

const MiB = 1024 * 1024;

let weftd: WeftdHandle;

beforeAll(async () => {
  weftd = await startWeftd({ pools: [`hdd:${makeTempDir('weft-hdd-')}:1GiB`, `ssd:${makeTempDir('weft-ssd-')}:1GiB`] });
});
afterAll(cleanupAll);

async function ok(result: Promise<RunResult>): Promise<string> {
  const r = await result;
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const weft = (...args: string[]) => ok(weftd.weft(args));
const weftJson = async <T>(...args: string[]) => JSON.parse(await weft('--output', 'json', ...args)) as T;

/** Snapshots (VOL@SNAP) are read-only exports: qemu must open them read-only. */
function qemuIo(exportName: string, ...commands: string[]): Promise<string> {
  const readOnly = exportName.includes('@') ? ['-r'] : [];
  return ok(run('qemu-io', ['-f', 'raw', ...readOnly, ...commands.flatMap((c) => ['-c', c]), weftd.nbdUri(exportName)]));
}

async function usedBytes(): Promise<{ hdd: number; ssd: number }> {
  const pools = await weftJson<PoolInfo[]>('pool', 'list');
  const used = (poolClass: string) => pools.find((p) => p.class === poolClass)!.usedBytes;
  return { hdd: used('hdd'), ssd: used('ssd') };
}

test('a clone of an hdd snapshot into ssd reads the snapshot, writes to ssd only, and gives all space back', async () => {
  const empty = await usedBytes();
  await weft('volume', 'create', 'vol', '--size', '64MiB', '--class', 'hdd');
  await qemuIo('vol', 'write -P 0xa1 0 4M', 'flush');
  await weft('snapshot', 'create', 'vol', 'snap');
  await qemuIo('vol', 'write -P 0xb2 0 1M', 'flush'); // the volume moves on; the snapshot keeps 0xa1

  expect(await weft('volume', 'create', 'new', '--from-snapshot', 'vol@snap', '--class', 'ssd')).toBe(
    'created volume "new" from vol@snap: 64 MiB in class ssd\n',
  );
  await ok(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', weftd.nbdUri('vol@snap'), weftd.nbdUri('new')]));
  await qemuIo('new', 'read -P 0xa1 0 4M');

  // New writes land in ssd, also where they replace blocks the snapshot holds in hdd.
  const cloned = await usedBytes();
  expect(cloned).toEqual({ hdd: empty.hdd + 5 * MiB, ssd: empty.ssd });
  await qemuIo('new', 'write -P 0xc3 0 1M', 'write -P 0xd4 8M 2M', 'flush');
  expect(await usedBytes()).toEqual({ hdd: cloned.hdd, ssd: cloned.ssd + 3 * MiB });
  await qemuIo('new', 'read -P 0xc3 0 1M', 'read -P 0xa1 1M 3M', 'read -P 0xd4 8M 2M');
  await qemuIo('vol@snap', 'read -P 0xa1 0 4M');

  const show = await weft('volume', 'show', 'new');
  expect(show).toMatch(/^Class:\s+ssd$/m);
  expect(show.trimEnd().split('\n').slice(-4)).toEqual(['Layers (head first):', 'LAYER     CLASS  ALLOCATED', 'head      ssd        3 MiB', 'vol@snap  hdd        4 MiB']);
  expect((await weftJson<VolumeInfo>('volume', 'show', 'new')).layers).toEqual([
    { class: 'ssd', allocatedBytes: 3 * MiB },
    { snapshot: { volume: 'vol', name: 'snap' }, class: 'hdd', allocatedBytes: 4 * MiB },
  ]);

  // Revert frees what the clone wrote since its own snapshot, in ssd.
  await weft('snapshot', 'create', 'new', 'mark');
  await qemuIo('new', 'write -P 0xe5 16M 1M', 'flush');
  expect((await usedBytes()).ssd).toBe(cloned.ssd + 4 * MiB);
  await weft('volume', 'revert', 'new@mark');
  expect(await usedBytes()).toEqual({ hdd: cloned.hdd, ssd: cloned.ssd + 3 * MiB });
  await weft('snapshot', 'delete', 'new@mark');

  // The snapshot goes from the list, but its blocks stay while the clone in ssd reads them.
  await weft('snapshot', 'delete', 'vol@snap');
  expect(await weftJson<unknown[]>('snapshot', 'list')).toEqual([]);
  await qemuIo('new', 'read -P 0xa1 1M 3M');
  expect((await weftJson<VolumeInfo>('volume', 'show', 'new')).layers).toEqual([
    { class: 'ssd', allocatedBytes: 3 * MiB },
    { deleted: true, class: 'hdd', allocatedBytes: 4 * MiB },
  ]);
  expect(await weft('volume', 'show', 'new')).toMatch(/^deleted snapshot\s+hdd\s+4 MiB$/m);
  expect(await usedBytes()).toEqual({ hdd: cloned.hdd, ssd: cloned.ssd + 3 * MiB });

  // With the clone gone, ssd is empty again and hdd holds only what vol reads: 4 MiB.
  await weft('volume', 'delete', 'new');
  expect(await usedBytes()).toEqual({ hdd: empty.hdd + 4 * MiB, ssd: empty.ssd });
  await qemuIo('vol', 'read -P 0xb2 0 1M', 'read -P 0xa1 1M 3M');
  await weft('volume', 'delete', 'vol');
  expect(await usedBytes()).toEqual(empty);
});

test('an unknown class is refused with the pools there are, and nothing is made', async () => {
  await weft('volume', 'create', 'src', '--size', '4MiB', '--class', 'hdd');
  await weft('snapshot', 'create', 'src', 's');
  const refused = await weftd.weft(['volume', 'create', 'copy', '--from-snapshot', 'src@s', '--class', 'nvme']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toBe('weft: no pool of class "nvme" on this node (pools: hdd, ssd)\n');
  expect((await weftJson<VolumeInfo[]>('volume', 'list')).map((v) => v.name)).toEqual(['src']);
});
