// Attach is local, also on a node whose view of the store is stale. The primary's node is cut from
// etcd while a client keeps writing through it; an in-sync replica takes over. The old primary is
// fenced by the replicas at its next write and stops serving, and its view of the record still
// names itself. Its clients must see a pause, then their writes served by the new primary, as a
// node with a current view forwards them (issue 9, point 5), not an error after the forwarder's
// 30 s of retries. Nor may it serve their reads from its own copy, stale once the new primary took
// a write: its read lease from the replicas has run out by the time the new primary serves.

import { NbdClient } from '../../fabric/nbd/client';
import { allInSync, ChaosCluster } from '../chaos/cluster';
import type { VolumeInfo } from '../../fabric/volume/types';
import { infoRequest, OPT, RawNbdClient, REP } from '../helpers/nbd-raw-client';
import { copyBytes } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;
const VOLUME = 'stale';
/** Above the forwarder's 30 s of retries, so that a write it gives up on fails here with its EIO. */
const CLIENT_TIMEOUT_MS = 45_000;

let cluster: ChaosCluster | undefined;

afterAll(async () => {
  await cluster?.close();
  await cleanupAll();
});

test('a client of the old primary, cut from etcd, has its writes served by the new primary', async () => {
  cluster = await ChaosCluster.start(3);
  const c = cluster;
  await c.nodes[0].api.createVolume({ name: VOLUME, sizeBytes: 64 * MiB, replicas: 3 });
  const before = (await c.waitForVolume(VOLUME, allInSync, 30_000, 'in sync')).replication!;
  const old = c.node(before.primary);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: old.weftd.nbdPort, exportName: VOLUME, timeoutMs: CLIENT_TIMEOUT_MS });
  try {
    const first = Buffer.alloc(4096, 0x11);
    await client.write(0, first, true);

    old.etcdLink.cut();
    const after = (await c.waitForVolume(VOLUME, (v) => v.replication!.epoch > before.epoch && v.replication!.primary !== old.id, 30_000, 'failed over')).replication!;

    // The old primary learns of the promotion only from the replicas' refusal of this write.
    const second = Buffer.alloc(4096, 0x22);
    const startedAt = Date.now();
    await client.write(4096, second, true);
    const third = Buffer.alloc(4096, 0x33);
    await client.write(8192, third, true);
    console.log(`writes through ${old.id} (cut from etcd) served by ${after.primary} at epoch ${after.epoch} after ${Date.now() - startedAt} ms`);

    // Read through a node with a current view: both writes are there, and the one before the cut.
    const reader = await NbdClient.connect({ host: '127.0.0.1', port: c.node(after.primary).weftd.nbdPort, exportName: VOLUME });
    try {
      expect((await reader.read(0, 12288)).equals(Buffer.concat([first, second, third]))).toBe(true);
    } finally {
      reader.close();
    }
    // Reads through the cut node are served by the new primary too.
    expect((await client.read(4096, 4096)).equals(second)).toBe(true);

    // What the cut node asked the other copies' nodes for: a primary newer than the one it knew.
    // The new primary opens that export; asked for one newer than itself, it refuses.
    const promoted = c.node(after.primary).weftd.nbdPort;
    const newer = await NbdClient.connect({ host: '127.0.0.1', port: promoted, exportName: `${VOLUME}~primary-after=${before.epoch}` });
    newer.close();
    await expect(NbdClient.connect({ host: '127.0.0.1', port: promoted, exportName: `${VOLUME}~primary-after=${after.epoch}` })).rejects.toThrow(/export/i);
  } finally {
    client.close();
    old.etcdLink.heal();
  }
  // Healed, the old primary catches up as a replica.
  const healed = await c.waitForVolume(VOLUME, allInSync, 60_000, 'in sync after the heal');
  expect(healed.replication!.primary).not.toBe(old.id);
});

test('a client of the old primary, cut from etcd, reads what the new primary took since, not its stale copy', async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const volume = 'leased';
  await c.nodes[0].api.createVolume({ name: volume, sizeBytes: 64 * MiB, replicas: 3 });
  const before = (await c.waitForVolume(volume, allInSync, 30_000, 'in sync')).replication!;
  const old = c.node(before.primary);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: old.weftd.nbdPort, exportName: volume, timeoutMs: CLIENT_TIMEOUT_MS });
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), true);
    expect((await client.read(0, 4096))[0]).toBe(0x11);

    old.etcdLink.cut();
    const after = (await c.waitForVolume(volume, (v) => v.replication!.epoch > before.epoch && v.replication!.primary !== old.id, 30_000, 'failed over')).replication!;
    // Another client writes through the new primary; the old one's client has not written since the cut.
    const writer = await NbdClient.connect({ host: '127.0.0.1', port: c.node(after.primary).weftd.nbdPort, exportName: volume });
    try {
      await writer.write(0, Buffer.alloc(4096, 0x44), true);
    } finally {
      writer.close();
    }
    const startedAt = Date.now();
    const read = await client.read(0, 4096);
    console.log(`read through ${old.id} (cut from etcd) after a write through ${after.primary}: 0x${read[0].toString(16)} after ${Date.now() - startedAt} ms`);
    expect(read.equals(Buffer.alloc(4096, 0x44))).toBe(true);
  } finally {
    client.close();
    old.etcdLink.heal();
  }
  await c.waitForVolume(volume, allInSync, 60_000, 'in sync after the heal');
});

test("a forwarder's older connection to the primary runs no request once a newer one has opened: an old write cannot land after one sent again", async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  await c.nodes[0].api.createVolume({ name: 'gen', sizeBytes: 16 * MiB, replicas: 2 });
  const serving = await c.waitForVolume('gen', (v) => allInSync(v) && v.replication!.epoch > 0, 30_000, 'served');
  const primaryPort = c.node(serving.replication!.primary).weftd.nbdPort;
  const connect = (exportName: string) => NbdClient.connect({ host: '127.0.0.1', port: primaryPort, exportName });
  // The record names the primary a moment before it serves (it raises the copies' epochs first).
  const serves = () => connect('gen~primary').then((client) => (client.close(), true), () => false);
  await waitFor(serves, 10_000, 50);
  const older = await connect('gen~primary~from=ab12.1');
  const newer = await connect('gen~primary~from=ab12.2');
  const other = await connect('gen~primary~from=cd34.1');
  try {
    await expect(older.write(0, Buffer.alloc(4096, 0x22), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
    await newer.write(4096, Buffer.alloc(4096, 0x33), true);
    await other.write(8192, Buffer.alloc(4096, 0x44), true); // another forwarder's generations are its own
    expect((await newer.read(0, 12288)).equals(Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096, 0x33), Buffer.alloc(4096, 0x44)]))).toBe(true);
    // A question about a newer generation (NBD_OPT_INFO) fences nothing.
    const asker = await RawNbdClient.connect(primaryPort);
    try {
      await asker.readGreeting();
      asker.sendClientFlags(3);
      const replies = await asker.optionExchange(OPT.INFO, infoRequest('gen~primary~from=ab12.3', []));
      expect(replies[replies.length - 1].type).toBe(REP.ACK);
    } finally {
      asker.socket.destroy();
    }
    await newer.write(12288, Buffer.alloc(4096, 0x35), true);
    // An older generation than one opened is refused, as is a malformed one.
    await expect(connect('gen~primary~from=ab12.1')).rejects.toThrow(/refused export/);
    await expect(connect('gen~primary~from=AB!.1')).rejects.toThrow(/refused export/);
  } finally {
    for (const client of [older, newer, other]) client.close();
  }
});

test("a primary's older replication connection to a copy runs no request once a newer one has opened: a write it gave up on cannot land after what it copied since", async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  await c.nodes[0].api.createVolume({ name: 'rgen', sizeBytes: 16 * MiB, replicas: 2 });
  const served = (await c.waitForVolume('rgen', (v) => allInSync(v) && v.replication!.epoch > 0, 30_000, 'served')).replication!;
  const copy = c.node(served.replicas.map((r) => r.node).find((n) => n !== served.primary) as string);
  const connect = (exportName: string) => NbdClient.connect({ host: '127.0.0.1', port: copy.weftd.nbdPort, exportName });
  const older = await connect(`rgen~epoch=${served.epoch}~from=ab12.1`);
  const newer = await connect(`rgen~epoch=${served.epoch}~from=ab12.2`);
  const other = await connect(`rgen~epoch=${served.epoch}~from=cd34.1`);
  try {
    await expect(older.write(0, Buffer.alloc(4096, 0x22), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
    await newer.write(4096, Buffer.alloc(4096, 0x33), true);
    await other.write(8192, Buffer.alloc(4096, 0x44), true); // another primary's generations are its own
    expect((await newer.read(0, 12288)).equals(Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096, 0x33), Buffer.alloc(4096, 0x44)]))).toBe(true);
    await expect(connect(`rgen~epoch=${served.epoch}~from=ab12.1`)).rejects.toThrow(/refused export/);
    await expect(connect(`rgen~epoch=${served.epoch}~from=AB!.1`)).rejects.toThrow(/refused export/);
  } finally {
    for (const client of [older, newer, other]) client.close();
  }
  // The primary's own connection, of another primary's generations, still replicates.
  const client = await NbdClient.connect({ host: '127.0.0.1', port: c.node(served.primary).weftd.nbdPort, exportName: 'rgen' });
  try {
    await client.write(16384, Buffer.alloc(4096, 0x55), true);
  } finally {
    client.close();
  }
  expect((await copyBytes(copy.weftd, 'rgen', served.epoch, 16384, 4096)).equals(Buffer.alloc(4096, 0x55))).toBe(true);
  expect(allInSync(await c.nodes[0].api.getVolume('rgen'))).toBe(true);
});

test('a client of a third node, cut from etcd with the old primary, has its writes served by the new primary once the old one is fenced', async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const { before, forwarder } = await twoCopiesServed(c, 'third');
  const old = c.node(before.primary);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: forwarder.weftd.nbdPort, exportName: 'third', timeoutMs: CLIENT_TIMEOUT_MS });
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), true);
    forwarder.etcdLink.cut();
    old.etcdLink.cut();
    const after = (await c.waitForVolume('third', (v) => v.replication!.epoch > before.epoch && v.replication!.primary !== old.id, 30_000, 'failed over')).replication!;

    // The forwarder's view still names the old primary, which stops serving once the copy promoted
    // since refuses this write: the forwarder finds the new primary through the other copy's node,
    // instead of failing the write with EIO after its 30 s of retries on the old one.
    const startedAt = Date.now();
    await client.write(4096, Buffer.alloc(4096, 0x22), true);
    const ms = Date.now() - startedAt;
    console.log(`a write through ${forwarder.id} (cut from etcd, its view naming ${old.id}) served by ${after.primary} after ${ms} ms`);
    const reader = await NbdClient.connect({ host: '127.0.0.1', port: c.node(after.primary).weftd.nbdPort, exportName: 'third' });
    try {
      expect((await reader.read(0, 8192)).equals(Buffer.concat([Buffer.alloc(4096, 0x11), Buffer.alloc(4096, 0x22)]))).toBe(true);
    } finally {
      reader.close();
    }
  } finally {
    client.close();
    forwarder.etcdLink.heal();
    old.etcdLink.heal();
  }
});

test('a node cut from etcd never forwards an attachment of a deleted volume to another volume made since under its name', async () => {
  const name = 'again';
  // Short: the forwarder keeps looking for the old volume until its client is gone (a hard disconnect).
  const { c, primary, forwarder, client } = await clientOfThirdNode(name, 8000);
  try {
    forwarder.etcdLink.cut();
    // Deleted and made again, primary on the same node: the forwarder's stale record still names it.
    // Its connection to the primary is cut first: a primary that sees it refuses the delete.
    await c.deleteUnseenByForwarders(primary, name);
    await untilAnswered(() => primary.api.createVolume({ name, sizeBytes: 16 * MiB, replicas: 2, locality: primary.id }));
    const made = await c.waitForVolume(name, (v) => allInSync(v) && v.replication!.epoch > 0, 30_000, 'made again and served');
    expect(made.replication!.primary).toBe(primary.id);

    await expect(client.write(4096, Buffer.alloc(4096, 0x22), true)).rejects.toThrow();
    const reader = await NbdClient.connect({ host: '127.0.0.1', port: primary.weftd.nbdPort, exportName: name });
    try {
      expect((await reader.read(0, 8192)).equals(Buffer.alloc(8192))).toBe(true);
    } finally {
      reader.close();
    }
    // What the forwarder asked for: the primary's service of the volume of its own create, which the
    // primary refuses now (as it refuses a malformed create ID); asked without one, it serves.
    const connect = (exportName: string) => NbdClient.connect({ host: '127.0.0.1', port: primary.weftd.nbdPort, exportName });
    await expect(connect(`${name}~primary~create=0123abcd-0000-4000-8000-000000000000~from=ef56.1`)).rejects.toThrow(/refused export/);
    await expect(connect(`${name}~primary~create=NOT_AN_ID`)).rejects.toThrow(/refused export/);
    (await connect(`${name}~primary`)).close();
  } finally {
    client.close();
    forwarder.etcdLink.heal();
  }
});

test('a client of a node without a copy whose connection to the primary was cut when the volume was deleted: its next request fails at once', async () => {
  const name = 'gone';
  const { c, primary, client } = await clientOfThirdNode(name, CLIENT_TIMEOUT_MS);
  try {
    await c.deleteUnseenByForwarders(primary, name);
    // The forwarder sees the record go: ESHUTDOWN, not its 30 s of retries for a primary it cannot reach.
    const startedAt = Date.now();
    await expect(client.write(4096, Buffer.alloc(4096, 0x22), true)).rejects.toThrow(/error 108|ESHUTDOWN/);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  } finally {
    client.close();
  }
});

test('a client of a third node has its write in flight on a primary that hangs served by the promoted one, not after the request timeout', async () => {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const name = 'hang';
  const { before, forwarder } = await twoCopiesServed(c, name);
  const hung = c.node(before.primary);
  // Below the forwarder's request timeout (15 s): the write must move when the record does.
  const client = await NbdClient.connect({ host: '127.0.0.1', port: forwarder.weftd.nbdPort, exportName: name, timeoutMs: 12_000 });
  const pid = hung.weftd.pid as number;
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), true);
    process.kill(pid, 'SIGSTOP'); // alive, holding its connections, answering nothing
    const startedAt = Date.now();
    await client.write(4096, Buffer.alloc(4096, 0x22), true);
    console.log(`write through ${forwarder.id} with primary ${hung.id} stopped: acknowledged after ${Date.now() - startedAt} ms`);
    process.kill(pid, 'SIGCONT');
    const after = await c.waitForVolume(name, (v) => v.replication!.primary !== hung.id, 30_000, 'failed over');
    expect((await client.read(0, 8192)).equals(Buffer.concat([Buffer.alloc(4096, 0x11), Buffer.alloc(4096, 0x22)]))).toBe(true);
    expect(after.replication!.epoch).toBeGreaterThan(before.epoch);
  } finally {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone
    }
    client.close();
  }
});

test("a forwarded write that takes a copy out, while another copy's node does not answer its control API, is acknowledged, not failed", async () => {
  // Before the write is acknowledged, the copies in sync are told of the absence. That call had the
  // 30 s deadline of control calls, past the forwarder's give-up (15 s a connection, 30 s in all):
  // the write failed with EIO, where the same write on the primary only waited.
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const [, n2, n3] = c.nodes;
  await c.waitForNodesUp(30_000);
  await untilAnswered(() => c.createOnN1('absent', 16 * MiB, 3));
  const client = await NbdClient.connect({ host: '127.0.0.1', port: n2.weftd.nbdPort, exportName: 'absent', timeoutMs: CLIENT_TIMEOUT_MS });
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), false);
    n3.peerLinks[0].cut(); // n3's copy stops answering the primary: the next write takes it out
    n2.peerLinks[1].cut(); // and n2's control API, where the primary tells n2's log of n3's absence
    await client.write(0, Buffer.alloc(4096, 0x22), false); // EIO before, after 30 s
    expect((await client.read(0, 4096)).equals(Buffer.alloc(4096, 0x22))).toBe(true);
  } finally {
    client.close();
    n3.peerLinks[0].heal();
    n2.peerLinks[1].heal();
  }
  await c.waitForVolume('absent', allInSync, 60_000, 'in sync'); // both copies taken out come back
});

test("a snapshot while the other copy's node does not answer its control API fails within seconds; a forwarded write held by it is acknowledged, not failed", async () => {
  // A control operation holds the volume's writes while it asks each copy's node; that call had the
  // 30 s deadline of control calls: the write waited 30 s, its forwarder sending it again after 15 s
  // (and failing it with EIO at 30 s). Now the snapshot fails after 5 s, and the write goes on (the
  // copy that did not answer is taken out by the write's notice of activity, 5 s more).
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const { before, forwarder } = await twoCopiesServed(c, 'snapped');
  const primary = c.node(before.primary);
  const other = c.node(before.replicas.find((r) => r.node !== primary.id)!.node);
  // Below the forwarder's request timeout (15 s): the write must not wait until it sends it again.
  const client = await NbdClient.connect({ host: '127.0.0.1', port: forwarder.weftd.nbdPort, exportName: 'snapped', timeoutMs: 14_000 });
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), true);
    other.peerLinks[1].cut(); // its control API; its copy still takes the primary's writes
    const startedAt = Date.now();
    const snapshot = primary.api.createSnapshot('snapped', 's1').then(
      () => 'made',
      (err: Error) => err.message,
    );
    await new Promise((resolve) => setTimeout(resolve, 300)); // the snapshot holds the writes now
    await client.write(4096, Buffer.alloc(4096, 0x22), true);
    const writeMs = Date.now() - startedAt;
    const outcome = await snapshot;
    console.log(`snapshot with ${other.id}'s API cut: ${outcome} after ${Date.now() - startedAt} ms; the forwarded write acknowledged after ${writeMs} ms`);
    expect(outcome).toMatch(new RegExp(`node ${other.id}`));
    expect((await client.read(0, 8192)).equals(Buffer.concat([Buffer.alloc(4096, 0x11), Buffer.alloc(4096, 0x22)]))).toBe(true);
  } finally {
    client.close();
    other.peerLinks[1].heal();
  }
  // Healed (the write's activity notice, which n2 did not answer either, took its copy out), the
  // snapshot is made, on both copies.
  await c.waitForVolume('snapped', allInSync, 60_000, 'in sync');
  await untilAnswered(() => primary.api.createSnapshot('snapped', 's1'));
  for (const node of [primary, other]) expect((await node.api.listSnapshots('snapped')).map((s) => s.name)).toEqual(['s1']);
});

/**
 * A 16 MiB volume with two copies, its primary on the first node, once served; and the node that
 * holds no copy of it (it forwards).
 */
async function twoCopiesServed(c: ChaosCluster, name: string): Promise<{ before: NonNullable<VolumeInfo['replication']>; forwarder: ChaosCluster['nodes'][number] }> {
  // A node healed by a test before may still refuse store calls for a moment (its etcd client's
  // circuit breaker), and be down until it has registered again.
  await c.waitForNodesUp(30_000);
  await untilAnswered(() => c.nodes[0].api.createVolume({ name, sizeBytes: 16 * MiB, replicas: 2, locality: c.nodes[0].id }));
  const before = (await c.waitForVolume(name, (v) => allInSync(v) && v.replication!.epoch > 0, 30_000, 'served')).replication!;
  return { before, forwarder: c.nodes.find((n) => !before.replicas.some((r) => r.node === n.id))! };
}

/** A volume of two copies (twoCopiesServed), and a client of it on the third node, its first write acknowledged there. */
async function clientOfThirdNode(name: string, timeoutMs: number) {
  cluster ??= await ChaosCluster.start(3);
  const c = cluster;
  const { before, forwarder } = await twoCopiesServed(c, name);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: forwarder.weftd.nbdPort, exportName: name, timeoutMs });
  await client.write(0, Buffer.alloc(4096, 0x11), true);
  return { c, primary: c.node(before.primary), forwarder, client };
}

/** call, again while it fails because the node's store client does not answer (for up to 30 s). */
async function untilAnswered<T>(call: () => Promise<T>): Promise<T> {
  const giveUpAt = Date.now() + 30_000;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!/did not answer/.test((err as Error).message) || Date.now() > giveUpAt) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
