// A resize of a replicated volume grows every copy, and a copy grown stays grown: so every copy is
// asked first whether it can take the size. Two weftd on a real etcd, the primary's pool smaller
// than the other's: a size only the other's pool can hold is refused, and no copy grows.

import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { copyUri, qemuIo, settled, startNodes, weftJson } from '../helpers/replicas';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

test("a resize beyond one copy's pool is refused, naming it, and grows no copy", async () => {
  const etcd = await startEtcd(1);
  const nodes = [...(await startNodes(etcd, ['n1'], 128 * MiB)), ...(await startNodes(etcd, ['n2'], 256 * MiB))].map((n) => n.weftd);
  const [n1, n2] = nodes;
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--locality', 'n1']);
  expect((await settled(n1, 'v')).replication?.primary).toBe('n1');
  await qemuIo(n2.nbdUri('v'), ['write -P 0x3c 60M 1M', 'flush']);

  // The other copy (n2) goes first: without the check it would grow, and n1 then refuse.
  const refused = await n2.weft(['volume', 'resize', 'v', '--size', '192MiB']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/node n1: a volume of 201326592 bytes does not fit in pool ssd \(\d+ bytes\)/);
  for (const node of nodes) {
    const shown = await weftJson<VolumeInfo>(node, ['volume', 'show', 'v']);
    expect(shown.sizeBytes).toBe(64 * MiB);
    expect(shown.replication?.replicas.map((r) => r.state)).toEqual(['in-sync', 'in-sync']);
    // Below the routing: each copy's own size, and its data.
    expect((await qemuIo(await copyUri(node, 'v'), ['length'], true)).trim()).toBe('64 MiB');
    await qemuIo(await copyUri(node, 'v'), ['read -P 0x3c 60M 1M'], true);
  }

  // A size both pools hold grows both.
  expect((await n2.weft(['volume', 'resize', 'v', '--size', '96MiB'])).code).toBe(0);
  for (const node of nodes) expect((await weftJson<VolumeInfo>(node, ['volume', 'show', 'v'])).sizeBytes).toBe(96 * MiB);
});

test('sizes that are not whole 4 KiB blocks are rounded up in the record as on the copies: every node says the same size', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = (await startNodes(etcd, ['n1', 'n2'], 128 * MiB)).map((n) => n.weftd);
  const sizes = async () => Promise.all([n1, n2].map(async (node) => (await weftJson<VolumeInfo>(node, ['volume', 'show', 'w'])).sizeBytes));
  // One copy, on n1: n2 serves it from the record (and forwards).
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'w', '--size', '10000000', '--replicas', '1', '--locality', 'n1']);
  expect(await sizes()).toEqual([10_002_432, 10_002_432]);
  expect((await n2.weft(['volume', 'resize', 'w', '--size', '20000000'])).code).toBe(0);
  expect(await sizes()).toEqual([20_000_768, 20_000_768]);
  expect((await qemuIo(n2.nbdUri('w'), ['length'], true)).trim()).toBe((await qemuIo(await copyUri(n1, 'w'), ['length'], true)).trim());
});
