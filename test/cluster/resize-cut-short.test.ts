// A resize grows the other copies first, then the primary's own, then the record. A primary that
// dies part way leaves some copies grown and the others, the record too, at the old size. Two weftd
// on a real etcd: n2's copy grown as n1 would have grown it (its ControlCopy at the primary's epoch),
// then n1 killed with -9. n2 serves at the size it has; the record follows, and n1's copy is grown
// before its resync writes to it (else every resync of it fails past its end, and it never returns).
// Three weftd, the copy grown not the one promoted: the new primary finishes the resize once every
// copy is back (left so, the grown copy refused any resize to a size between, and every revert).

import { WeftClient } from '../../fabric/api/client';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { promotionRank } from '../../fabric/cluster/volume-brain';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { copyBytes, qemuIo, settled, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

/** Grows node's copy of volume to sizeBytes as its primary would at epoch (ControlCopy), and no other. */
async function growOneCopy(node: WeftdHandle, volume: string, sizeBytes: number, epoch: number): Promise<void> {
  const api = new WeftClient(`127.0.0.1:${node.apiPort}`);
  try {
    await api.controlCopy(volume, { type: 'resize', sizeBytes }, epoch);
  } finally {
    api.close();
  }
}

test('a copy that a resize cut short left smaller than the new primary is grown before its resync, and the record follows', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = (await startNodes(etcd, ['n1', 'n2'], 256 * MiB)).map((n) => n.weftd);
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--locality', 'n1']);
  expect((await settled(n1, 'v')).replication).toMatchObject({ primary: 'n1', epoch: 1 });
  await qemuIo(n1.nbdUri('v'), ['write -P 0x3c 60M 1M', 'flush']);

  await growOneCopy(n2, 'v', 96 * MiB, 1);
  await n1.kill9();

  // n2 serves its copy's size, and the record says so.
  await waitFor(async () => (await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])).replication?.primary === 'n2', 30_000, 200);
  await qemuIo(n2.nbdUri('v'), ['write -P 0x5a 90M 1M', 'flush']);
  expect((await qemuIo(n2.nbdUri('v'), ['length'], true)).trim()).toBe('96 MiB');

  await n1.start();
  const shown = await settled(n2, 'v', 1);
  expect(shown.sizeBytes).toBe(96 * MiB);
  const store = await EtcdStore.open(etcd.endpoints);
  try {
    // What places a replacement copy, for one.
    expect(JSON.parse((await store.get('volumes/v'))?.value ?? '{}')).toMatchObject({ sizeBytes: 96 * MiB });
  } finally {
    await store.close();
  }
  expect(shown.replication?.replicas.map((r) => r.state)).toEqual(['in-sync', 'in-sync']);
  const epoch = shown.replication?.epoch as number;
  for (const node of [n1, n2]) {
    expect((await copyBytes(node, 'v', epoch, 90 * MiB, MiB)).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
    expect((await copyBytes(node, 'v', epoch, 60 * MiB, MiB)).equals(Buffer.alloc(MiB, 0x3c))).toBe(true);
  }
  expect(n2.logs()).toMatch(/"node":"n1","sizeBytes":100663296[^\n]*"msg":"growing a copy that a resize cut short left smaller than this one"/);
});

test('a resize cut short that grew a copy other than the one promoted is finished by the new primary once every copy is back', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2, n3] = (await startNodes(etcd, ['n1', 'n2', 'n3'], 256 * MiB)).map((n) => n.weftd);
  // A name for which n3 is promoted before n2 when n1 dies: the copy not grown serves.
  const volume = Array.from({ length: 100 }, (_, i) => `v${i}`).find((name) => promotionRank(name, ['n2', 'n3'])[0] === 'n3') as string;
  await weftJson<VolumeInfo>(n1, ['volume', 'create', volume, '--size', '64MiB', '--replicas', '3', '--locality', 'n1']);
  expect((await settled(n1, volume)).replication).toMatchObject({ primary: 'n1', epoch: 1 });
  await qemuIo(n1.nbdUri(volume), ['write -P 0x3c 60M 1M', 'flush']);

  await growOneCopy(n2, volume, 96 * MiB, 1);
  await n1.kill9();
  await waitFor(async () => (await weftJson<VolumeInfo>(n3, ['volume', 'show', volume])).replication?.primary === 'n3', 30_000, 200);

  await n1.start();
  await waitFor(async () => (await weftJson<VolumeInfo>(n3, ['volume', 'show', volume])).sizeBytes === 96 * MiB, 60_000, 200);
  expect(n3.logs()).toMatch(/"sizeBytes":100663296,"ownBytes":67108864[^\n]*"msg":"finishing a resize cut short: a copy was grown, this one not"/);
  expect((await qemuIo(n3.nbdUri(volume), ['length'], true)).trim()).toBe('96 MiB');
  await qemuIo(n3.nbdUri(volume), ['write -P 0x5a 90M 1M', 'flush']);
  const shown = await settled(n3, volume, 1);
  const epoch = shown.replication?.epoch as number;
  for (const node of [n1, n2, n3]) {
    expect((await copyBytes(node, volume, epoch, 90 * MiB, MiB)).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
    expect((await copyBytes(node, volume, epoch, 60 * MiB, MiB)).equals(Buffer.alloc(MiB, 0x3c))).toBe(true);
  }
  // A resize to a size between is now refused as any shrink is, by every copy alike; one past it is made.
  expect((await n3.weft(['volume', 'resize', volume, '--size', '80MiB'])).stderr).toMatch(/shrinking|smaller|never shrink/);
  expect((await weftJson<VolumeInfo>(n3, ['volume', 'resize', volume, '--size', '112MiB'])).sizeBytes).toBe(112 * MiB);
});
