// A replica whose node stays down past --replica-timeout is replaced on another node, which gets a
// full copy while the volume stays online; the replaced copy leaves the record once the new one is
// in sync, and its node deletes it when it is back, with its snapshots (the volume's are asked of
// the copies its record names), even if the volume was deleted meanwhile. So does a node that was
// down while the volume was deleted; the snapshots stay on the node that holds them. Three weftd
// processes on a real etcd.

import type { PoolInfo, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { qemuIo, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

function show(via: WeftdHandle, name: string): Promise<VolumeInfo> {
  return weftJson<VolumeInfo>(via, ['volume', 'show', name]);
}

test('a replica down past --replica-timeout is replaced on another node, with a full copy, while the volume serves', async () => {
  const etcd = await startEtcd(1);
  const nodes: WeftdHandle[] = [];
  for (const id of ['n1', 'n2', 'n3']) {
    const pool = makeTempDir(`weft-pool-${id}-`);
    nodes.push(await startWeftd({ pools: [`ssd:${pool}:${128 * MiB}`], extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1', '--replica-timeout', '3'] }));
  }
  const created = JSON.parse((await nodes[0].weft(['volume', 'create', 'v', '--size', '32MiB', '--replicas', '2', '--locality', 'n1', '--output', 'json'])).stdout) as VolumeInfo;
  const other = created.replication!.replicas[1].node;
  const spare = ['n2', 'n3'].find((n) => n !== other) as string;
  await waitFor(async () => (await show(nodes[0], 'v')).replication!.epoch === 1, 30_000, 200);
  await qemuIo(nodes[0].nbdUri('v'), ['write -P 0x42 0 4M', 'write -P 0x43 20M 64k', 'flush']);
  expect((await nodes[0].weft(['snapshot', 'create', 'v', 's1'])).code).toBe(0);

  await nodes.find((n) => n.nodeId === other)!.kill9();
  // Written while the copy is away (and while its replacement is made): the new copy must have it too.
  await qemuIo(nodes[0].nbdUri('v'), ['write -P 0x44 8M 1M', 'flush']);
  let replicas: string[] = [];
  await waitFor(
    async () => {
      const r = (await show(nodes[0], 'v')).replication!;
      replicas = r.replicas.map((c) => `${c.node}:${c.state}`);
      return replicas.join(',') === `n1:in-sync,${spare}:in-sync`;
    },
    60_000,
    250,
  );
  expect(replicas).toEqual(['n1:in-sync', `${spare}:in-sync`]);
  const newCopy = nodes.find((n) => n.nodeId === spare)!;
  const epoch = (await show(newCopy, 'v')).epoch;
  // The new copy itself (below the routing), and the volume through the spare's node.
  await qemuIo(newCopy.nbdUri(`v~epoch=${epoch}`), ['read -P 0x42 0 4M', 'read -P 0x44 8M 1M', 'read -P 0x43 20M 64k', 'read -P 0 24M 8M'], true);
  await qemuIo(newCopy.nbdUri('v'), ['read -P 0x44 8M 1M'], true);
  // The replaced copy is gone from the primary's reports too: not a copy forever behind, which
  // an alert would fire on.
  await qemuIo(nodes[0].nbdUri('v'), ['write -P 0x45 12M 1M', 'flush']);
  const metrics = await (await fetch(`http://127.0.0.1:${nodes[0].metricsPort}/metrics`)).text();
  const replicaSeries = metrics.split('\n').filter((line) => line.startsWith('weft_replica_') && line.includes('volume="v"'));
  expect(replicaSeries.some((line) => line.includes(`replica="${spare}"`))).toBe(true);
  expect(replicaSeries.filter((line) => line.includes(`replica="${other}"`))).toEqual([]);

  // A volume deleted while one of its copies' node is down: that node deletes its copy once back.
  await newCopy.kill9();
  // Retried as a user would: until the dead node's lease has lapsed it counts as up but cannot be asked, and the record may change meanwhile.
  await waitFor(async () => {
    const deleted = await nodes[0].weft(['volume', 'delete', 'v']);
    if (deleted.code !== 0 && !/try again|cannot reach/.test(deleted.stderr)) throw new Error(deleted.stderr);
    return deleted.code === 0;
  }, 30_000, 500);
  await newCopy.start();
  await waitFor(async () => (await poolUsedBytes(newCopy)) === 0, 30_000, 250);
  expect((await newCopy.weft(['volume', 'show', 'v'])).code).not.toBe(0);
  // The replaced copy's node, back after all that: it deletes the copy, and its snapshot, although the
  // volume is gone now (its snapshots are those of the copies it named when it was deleted).
  const replaced = nodes.find((n) => n.nodeId === other)!;
  await replaced.start();
  await waitFor(async () => (await poolUsedBytes(replaced)) === 0, 30_000, 250);
  // n1's copy had the snapshot (the replacement, made after it, not): it stays there, listed anywhere.
  for (const node of nodes.filter((n) => n !== replaced)) expect((await weftJson<{ name: string }[]>(node, ['snapshot', 'list', 'v'])).map((s) => s.name)).toEqual(['s1']);
  expect((await weftJson<{ name: string }[]>(replaced, ['snapshot', 'list', 'v'])).map((s) => s.name)).toEqual(['s1']);
});

/** What the node's pools hold, in all. */
async function poolUsedBytes(node: WeftdHandle): Promise<number> {
  return (await weftJson<PoolInfo[]>(node, ['pool', 'list'])).reduce((sum, p) => sum + p.usedBytes, 0);
}
