// A primary writes to its own copy through the same epoch fence as its copies do. A newer primary
// raises the epoch of every copy it reaches before it serves; an old primary whose view of the
// store lags may still be serving, and a write that reaches it then must land on no copy whose
// epoch was raised, its own included: there it would be a write no one acknowledged, in a block a
// resync of that copy may already have been told is equal. Two weftd on a real etcd; n1's copy
// raised behind its back (an NBD connection at the next epoch, as a promotion opens one).

import { NbdClient } from '../../fabric/nbd/client';
import { primaryExportName } from '../../fabric/nbd-exports';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { qemuIo, settled, startNodes, weftJson } from '../helpers/replicas';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

test("a write reaching a primary whose own copy's epoch was raised is refused, and its copy keeps what it had", async () => {
  const [n1] = (await startNodes(await startEtcd(1), ['n1', 'n2'], 128 * MiB)).map((n) => n.weftd);
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2', '--locality', 'n1']);
  expect((await settled(n1, 'v')).replication).toMatchObject({ primary: 'n1', epoch: 1 });
  await qemuIo(n1.nbdUri('v'), ['write -P 0x11 0 64k', 'flush']);

  const raise = await NbdClient.connect({ host: '127.0.0.1', port: n1.nbdPort, exportName: 'v~epoch=2' });
  raise.close();
  const primary = await NbdClient.connect({ host: '127.0.0.1', port: n1.nbdPort, exportName: primaryExportName('v') });
  try {
    // Refused by its own copy (EPERM), the primary stops serving: its answer is then ESHUTDOWN, which
    // sends a forwarder on to find the primary of the newer epoch.
    await expect(primary.write(0, Buffer.alloc(4096, 0x22), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  } finally {
    primary.close();
  }
  await qemuIo(n1.nbdUri('v~epoch=2'), ['read -P 0x11 0 64k'], true);
  expect(n1.logs()).toMatch(/"reason":"a replica refused a write of epoch 1: a newer primary raised its epoch"[^\n]*"msg":"stopped serving as primary"/);
});
