// A resize grows the other copies first, then the primary's own, then the record. A primary that
// dies part way leaves some copies grown and the others, the record too, at the old size. Two weftd
// on a real etcd: n2's copy grown as n1 would have grown it (its ControlCopy at the primary's epoch),
// then n1 killed with -9. n2 serves at the size it has; the record follows, and n1's copy is grown
// before its resync writes to it (else every resync of it fails past its end, and it never returns).

import { WeftClient } from '../../fabric/api/client';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { copyBytes, qemuIo, settled, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

test('a copy that a resize cut short left smaller than the new primary is grown before its resync, and the record follows', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = (await startNodes(etcd, ['n1', 'n2'], 256 * MiB)).map((n) => n.weftd);
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--locality', 'n1']);
  expect((await settled(n1, 'v')).replication).toMatchObject({ primary: 'n1', epoch: 1 });
  await qemuIo(n1.nbdUri('v'), ['write -P 0x3c 60M 1M', 'flush']);

  const api = new WeftClient(`127.0.0.1:${n2.apiPort}`);
  try {
    await api.controlCopy('v', { type: 'resize', sizeBytes: 96 * MiB }, 1);
  } finally {
    api.close();
  }
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
