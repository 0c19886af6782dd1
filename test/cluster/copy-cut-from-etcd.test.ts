// A copy is replaced when it is lost, not when its node loses the store. A node cut from etcd (its
// lease lapsed, listed down) whose copy still takes every write stays in the in-sync set past
// --replica-timeout: replacing it cost a full copy, with a copy fewer in sync meanwhile. A dead
// node's copy of an idle volume (no write to find it out) is found out all the same: the primary
// flushes through its copies while one in sync is on a node listed down, and replaces it. Three
// weftd on a real etcd, each behind proxies the test cuts (test/chaos/cluster.ts).

import { allInSync, ChaosCluster } from '../chaos/cluster';
import { qemuIo } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;
const REPLICA_TIMEOUT_S = 3;

let cluster: ChaosCluster | undefined;

afterAll(async () => {
  await cluster?.close();
  await cleanupAll();
});

test('a copy whose node is cut from etcd stays in sync past --replica-timeout; a dead node\'s copy of an idle volume is replaced', async () => {
  cluster = await ChaosCluster.start(3, ['--replica-timeout', String(REPLICA_TIMEOUT_S)]);
  const c = cluster;
  const created = await c.createOnN1('v', 64 * MiB, 2);
  const copy = c.node(created.replication!.replicas.find((r) => r.node !== 'n1')!.node);
  const spare = c.nodes.find((n) => n.id !== 'n1' && n !== copy)!;
  const n1 = c.node('n1');

  copy.etcdLink.cut();
  await waitFor(async () => (await n1.api.listNodes()).some((n) => n.id === copy.id && n.state === 'down'), 30_000, 200);
  // Written through for three times the timeout, and idle beyond it: the copy takes it all.
  const until = Date.now() + 3 * REPLICA_TIMEOUT_S * 1000;
  for (let i = 0; Date.now() < until; i++) await qemuIo(n1.weftd.nbdUri('v'), [`write -P ${i % 250} ${i % 60}M 64k`, 'flush']);
  await new Promise((resolve) => setTimeout(resolve, 2 * REPLICA_TIMEOUT_S * 1000));
  const kept = await c.show(n1, 'v');
  expect(kept?.replication?.replicas.map((r) => `${r.node}:${r.state}`)).toEqual(['n1:in-sync', `${copy.id}:in-sync`]);
  copy.etcdLink.heal();
  await c.waitForNodesUp(30_000);

  // The copy's node dies; nothing writes to the volume.
  await c.kill9(copy);
  const replaced = await c.waitForVolume('v', (v) => allInSync(v) && v.replication!.replicas.some((r) => r.node === spare.id), 60_000, `replaced on ${spare.id}`);
  expect(replaced.replication!.replicas.map((r) => r.node)).toEqual(['n1', spare.id]);
  await qemuIo(spare.weftd.nbdUri('v'), ['read -P 0 62M 2M'], true);
});
