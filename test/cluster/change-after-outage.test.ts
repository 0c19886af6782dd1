// A copy lost while every node is cut from etcd for longer than the node leases (etcd drops every
// primary lease key meanwhile): the write that needs the copy out of the in-sync set waits for etcd,
// and once etcd is back the primary puts its lease key back, takes the copy out and acknowledges the
// write at its epoch: it does not step down. Two weftd on a real etcd, each reaching it through a
// proxy the test cuts; the copy killed with -9.

import { qemuIo } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';
import { run } from '../helpers/weftd';

jest.setTimeout(120_000);

const startCluster = ownCluster();

test('a copy lost while etcd is out of reach: once etcd is back, the primary takes it out and serves on at its epoch', async () => {
  const cluster = await startCluster(2, 'v');
  const [n1, n2] = cluster.nodes;
  await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x11 0 64k', 'flush']); // served, and replicated

  for (const node of cluster.nodes) node.etcdLink.cut();
  await cluster.kill9(n2);
  // Not acknowledged until n2 is out of the in-sync set in the store: it waits for etcd.
  const write = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 64k', '-c', 'flush', n1.weftd.nbdUri('v')], { timeoutMs: 60_000 }).then((result) => ({ result, at: Date.now() }));
  await new Promise((resolve) => setTimeout(resolve, 7000)); // past the 3 s node leases: etcd drops the primary lease key
  const healedAt = Date.now();
  n1.etcdLink.heal();

  const written = await write;
  expect(written.result).toMatchObject({ code: 0 });
  expect(written.at).toBeGreaterThanOrEqual(healedAt);
  const shown = await cluster.waitForVolume('v', (v) => v.replication?.replicas.find((r) => r.node === 'n2')?.state !== 'in-sync', 30_000, 'n2 out');
  expect([shown.replication?.primary, shown.replication?.epoch]).toEqual(['n1', 1]);
  expect(n1.weftd.logs()).not.toMatch(/stopped serving/);
  await qemuIo(n1.weftd.nbdUri('v'), ['read -P 0x77 0 64k'], true);
});
