// A node cut from etcd loses its attach claims with its lease, and the volume may then be staged on
// another node, while the cut node's pods still run and write through it: it reaches the primary,
// only not the store. The primary refuses the cut node's changes while the claim names another
// node (replication/claim-fence.ts): two kernels must never write one filesystem. Three real weftd
// on a real etcd, each reaching etcd through a proxy the test cuts.

import { NbdClient } from '../../fabric/nbd/client';
import { REP_ERR_INVALID } from '../../fabric/nbd/protocol';
import { allInSync, ChaosCluster, type ChaosNode } from '../chaos/cluster';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const VOLUME = 'claimed';
const BLOCK = 4096;

let cluster: ChaosCluster | undefined;

afterAll(async () => {
  await cluster?.close();
  await cleanupAll();
});

/** Waits until node shows the volume attached on `attached` ('' for none). */
async function attachedAs(c: ChaosCluster, node: ChaosNode, attached: string, volume = VOLUME): Promise<void> {
  let seen: string | undefined;
  await waitFor(async () => (seen = (await c.show(node, volume))?.replication?.attachedNode) === attached, 20_000, 50).catch(() => {
    throw new Error(`node ${node.id} shows volume ${volume} attached on ${JSON.stringify(seen)}, not ${JSON.stringify(attached)}`);
  });
}

test('a node cut from etcd, whose claim another node took, has its writes refused by the primary; its reads go on', async () => {
  cluster = await ChaosCluster.start(3);
  const c = cluster;
  await c.nodes[0].api.createVolume({ name: VOLUME, sizeBytes: 64 * MiB, replicas: 2 });
  const { primary } = (await c.waitForVolume(VOLUME, allInSync, 30_000, 'in sync')).replication!;
  // The cut node forwards to the primary; the other stages the volume once the cut node's claim lapsed.
  const [cut, other] = c.nodes.filter((n) => n.id !== primary);
  const p = c.node(primary);

  await cut.api.claimVolume(VOLUME);
  await attachedAs(c, p, cut.id);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: cut.weftd.nbdPort, exportName: VOLUME });
  try {
    const before = Buffer.alloc(BLOCK, 0x11);
    await client.write(0, before, true);

    // Refused while the cut node's claim stands.
    await expect(other.api.claimVolume(VOLUME)).rejects.toThrow(`volume ${VOLUME} is attached on node ${cut.id}`);
    cut.etcdLink.cut();
    // Cut, it still writes (the claim is its own, then no one's), until another node claims the volume.
    const whileCut = Buffer.alloc(BLOCK, 0x77);
    await client.write(3 * BLOCK, whileCut, true);
    // Its lease lapses (3 s), and with it the claim: the other node stages the volume.
    await waitFor(() => other.api.claimVolume(VOLUME).then(() => true, () => false), 30_000, 200);
    await attachedAs(c, p, other.id);
    await attachedAs(c, other, other.id); // its own view too, once its watch has brought the claim
    expect((await p.weftd.weft(['volume', 'show', VOLUME])).stdout).toContain(`Attached on: ${other.id}`);

    // The cut node's pod writes on: refused, with EIO (to its filesystem, a failing disk), and nothing changes.
    await expect(client.write(BLOCK, Buffer.alloc(BLOCK, 0x22), true)).rejects.toThrow(/EIO|error 5/);
    await expect(client.write(0, Buffer.alloc(BLOCK, 0x33), false)).rejects.toThrow(/EIO|error 5/);
    await expect(client.writeZeroes(0, BLOCK, true, true)).rejects.toThrow(/EIO|error 5/);
    await expect(client.trim(0, BLOCK, true)).rejects.toThrow(/EIO|error 5/);
    // Reads and flushes change nothing: they go on.
    expect((await client.read(0, BLOCK)).equals(before)).toBe(true);
    expect((await client.read(3 * BLOCK, BLOCK)).equals(whileCut)).toBe(true);
    await client.flush();
    // Refused by the primary's fence, not lost on the way: its log names the claim.
    expect(p.weftd.logs()).toContain(`volume ${VOLUME} is attached on node ${other.id}: changes through node ${cut.id} are refused`);

    // The node that holds the claim writes, through its own forwarder.
    const owner = await NbdClient.connect({ host: '127.0.0.1', port: other.weftd.nbdPort, exportName: VOLUME });
    try {
      const mine = Buffer.alloc(BLOCK, 0x44);
      await owner.write(BLOCK, mine, true);
      expect((await owner.read(0, 4 * BLOCK)).equals(Buffer.concat([before, mine, Buffer.alloc(BLOCK), whileCut]))).toBe(true);
    } finally {
      owner.close();
    }

    // Healed, the cut node cannot take the claim back while the other holds it: still refused.
    cut.etcdLink.heal();
    let refusal = '';
    // UNAVAILABLE until it has a lease again, then refused for the other's claim.
    await waitFor(() => cut.api.claimVolume(VOLUME).then(() => false, (err: Error) => (refusal = err.message).includes('is attached on node')), 30_000, 200);
    expect(refusal).toContain(`volume ${VOLUME} is attached on node ${other.id}`);
    await expect(client.write(BLOCK, Buffer.alloc(BLOCK, 0x55), true)).rejects.toThrow(/EIO|error 5/);

    // Released (the other node detached): every node may write again.
    await other.api.releaseVolume(VOLUME);
    await attachedAs(c, p, '');
    const after = Buffer.alloc(BLOCK, 0x66);
    await client.write(2 * BLOCK, after, true);
    expect((await client.read(2 * BLOCK, BLOCK)).equals(after)).toBe(true);
  } finally {
    client.close();
    cut.etcdLink.heal();
  }

  // The forwarder's node comes last in the name, after its connection: anything else is refused.
  const connect = (exportName: string) => NbdClient.connect({ host: '127.0.0.1', port: p.weftd.nbdPort, exportName });
  (await connect(`${VOLUME}~primary~from=ab12.1~by=${other.id}`)).close();
  for (const malformed of [`~primary~from=ab12.2~by=n!`, `~primary~by=${other.id}`, `~primary~by=${other.id}~from=ab12.3`, `~primary~from=ab12.4~by=`]) {
    await expect(connect(`${VOLUME}${malformed}`)).rejects.toMatchObject({ replyType: REP_ERR_INVALID });
  }
});

test("a node's own clients are fenced too: where it serves the volume itself (its only copy), another node's claim stops their writes", async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const [a, b] = c.nodes;
  await c.waitForNodesUp(30_000); // a node healed above registers again a moment after its heal
  await a.api.createVolume({ name: 'single', sizeBytes: 16 * MiB, replicas: 1, locality: a.id });
  await c.waitForVolume('single', (v) => allInSync(v) && v.replication!.primary === a.id, 30_000, 'served on a');
  // A client on the primary's own node (as a filesystem left mounted across a restart of its weftd).
  const local = await NbdClient.connect({ host: '127.0.0.1', port: a.weftd.nbdPort, exportName: 'single' });
  try {
    const first = Buffer.alloc(BLOCK, 0x11);
    await local.write(0, first, true);
    await b.api.claimVolume('single');
    await attachedAs(c, a, b.id, 'single');
    await expect(local.write(0, Buffer.alloc(BLOCK, 0x22), true)).rejects.toThrow(/EIO|error 5/);
    expect((await local.read(0, BLOCK)).equals(first)).toBe(true);
    expect(a.weftd.logs()).toContain(`volume single is attached on node ${b.id}: changes through node ${a.id} are refused`);
    // The claim's holder writes, through its forwarder to this primary.
    const owner = await NbdClient.connect({ host: '127.0.0.1', port: b.weftd.nbdPort, exportName: 'single' });
    try {
      await owner.write(0, Buffer.alloc(BLOCK, 0x33), true);
    } finally {
      owner.close();
    }
    await b.api.releaseVolume('single');
    await attachedAs(c, a, '', 'single');
    await local.write(BLOCK, Buffer.alloc(BLOCK, 0x44), true);
  } finally {
    local.close();
  }
});
