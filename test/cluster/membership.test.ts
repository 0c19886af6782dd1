// Membership with real parts: three weftd processes on one real etcd register themselves, `weft node
// list` shows each with its state, zone, address, pools and capacity; a node killed with -9 shows
// down within its lease, and up again once restarted; a second weftd with a taken node id is
// refused. On the embedded store, a single node lists itself.

import type { ClusterNode } from '../../fabric/cluster/membership';
import { NODE_LEASE_SECONDS } from '../../fabric/cluster/membership';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

async function nodeList(via: WeftdHandle): Promise<ClusterNode[]> {
  const result = await via.weft(['node', 'list', '--output', 'json']);
  if (result.code !== 0) throw new Error(`weft node list failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as ClusterNode[];
}

function startMember(etcd: EtcdCluster, id: string, zone: string, dataDir?: string): Promise<WeftdHandle> {
  const poolDir = makeTempDir(`weft-pool-${id}-`);
  return startWeftd({
    dataDir,
    pools: [`ssd:${poolDir}:${64 * MiB}`],
    extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--zone', zone, '--advertise', '127.0.0.1'],
  });
}

afterAll(cleanupAll);

describe('membership on etcd', () => {
  let etcd: EtcdCluster;
  const nodes: WeftdHandle[] = [];

  beforeAll(async () => {
    etcd = await startEtcd(1);
    for (const [id, zone] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']]) nodes.push(await startMember(etcd, id, zone));
  });

  test('every node lists every node, up, with its zone, address, ports and pools', async () => {
    for (const via of nodes) {
      const list = await nodeList(via);
      expect(list.map((n) => [n.id, n.state, n.zone, n.address])).toEqual([
        ['n1', 'up', 'a', '127.0.0.1'],
        ['n2', 'up', 'b', '127.0.0.1'],
        ['n3', 'up', 'c', '127.0.0.1'],
      ]);
      for (const [index, n] of list.entries()) {
        expect(n.nbdPort).toBe(nodes[index].nbdPort);
        expect(n.apiPort).toBe(nodes[index].apiPort);
        // The pools as the node itself lists them.
        const own = JSON.parse((await nodes[index].weft(['pool', 'list', '--output', 'json'])).stdout) as { class: string; capacityBytes: number }[];
        expect(n.pools.map((p) => [p.class, p.capacityBytes])).toEqual(own.map((p) => [p.class, p.capacityBytes]));
        expect(own[0].capacityBytes).toBeGreaterThan(60 * MiB);
      }
    }
    const table = await nodes[0].weft(['node', 'list']);
    expect(table.stdout).toMatch(/^NODE\s+STATE\s+ZONE\s+ADDRESS\s+POOLS\s+CAPACITY/);
    expect(table.stdout).toMatch(/\nn2\s+up\s+b\s+127\.0\.0\.1\s+ssd\s+63 MiB\s+0 B\s+0 B\s+0\s/);
  });

  test('a node killed with -9 shows down within its lease, and up again once restarted', async () => {
    await nodes[1].kill9();
    const killedAt = Date.now();
    await waitFor(async () => (await nodeList(nodes[0])).find((n) => n.id === 'n2')?.state === 'down', (NODE_LEASE_SECONDS + 5) * 1000, 200);
    expect(Date.now() - killedAt).toBeLessThan((NODE_LEASE_SECONDS + 5) * 1000);
    // Its registration stays: the list still names it, with its zone and pools.
    const down = (await nodeList(nodes[2])).find((n) => n.id === 'n2')!;
    expect([down.state, down.zone, down.pools.length]).toEqual(['down', 'b', 1]);

    await nodes[1].start();
    expect((await nodeList(nodes[0])).find((n) => n.id === 'n2')?.state).toBe('up');
  });

  test('a second weftd with a node id that is up is refused, and the first stays up', async () => {
    const error = await startMember(etcd, 'n3', 'z').then(
      () => undefined,
      (err: Error) => err,
    );
    expect(error?.message).toMatch(/node id n3 is already up in the cluster .*another weftd running with the same --node-id/);
    expect((await nodeList(nodes[0])).find((n) => n.id === 'n3')).toMatchObject({ state: 'up', zone: 'c' });
  });

  test('a weftd advertising the address (host and port) of a node that is up is refused: the others would reach that node in its place', async () => {
    // It listens elsewhere (127.0.0.2, the same ports), and advertises n1's 127.0.0.1.
    const n1 = nodes[0];
    const error = await startWeftd({
      pools: [`ssd:${makeTempDir('weft-pool-n4-')}:${64 * MiB}`],
      extraArgs: ['--store', etcd.storeSpec, '--node-id', 'n4', '--listen', '127.0.0.2', '--advertise', '127.0.0.1', '--nbd-port', String(n1.nbdPort), '--api-port', String(n1.apiPort)],
    }).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(error?.message).toMatch(new RegExp(`node n1 is up at 127\\.0\\.0\\.1:${n1.nbdPort}, an address this node would advertise.*--advertise`));
    expect((await nodeList(n1)).map((n) => n.id)).not.toContain('n4');
  });

  test('a node stopped cleanly shows down at once', async () => {
    await nodes[2].stop();
    expect((await nodeList(nodes[0])).find((n) => n.id === 'n3')?.state).toBe('down');
  });
});

test('on the embedded store, the single node lists itself', async () => {
  const node = await startWeftd({ extraArgs: ['--node-id', 'solo', '--zone', 'z1'] });
  const list = await nodeList(node);
  expect(list.map((n) => [n.id, n.state, n.zone, n.address, n.volumes])).toEqual([['solo', 'up', 'z1', '127.0.0.1', 0]]);
});
