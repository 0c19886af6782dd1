// A snapshot of a replicated volume is taken on the other copies first, then the primary's. A
// primary that dies part way leaves it on some copies and not others, never acknowledged. It used
// to stay there: listed by the nodes that held it (a CSI CreateSnapshot retried on such a node
// reported it as made), and every later snapshot of the name failed on them ("already exists").
// The record now marks a snapshot while it is taken; while marked it is neither listed nor served,
// and once every copy can be asked it is kept if every copy holds it, else deleted. Three weftd on
// a real etcd.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { allInSync, ChaosCluster, type ChaosNode } from '../chaos/cluster';
import type { VolumeRecord } from '../../fabric/cluster/volume-record';
import { NbdClient } from '../../fabric/nbd/client';
import { waitFor } from '../helpers/wait-for';
import { SharedCluster } from '../helpers/shared-cluster';

jest.setTimeout(180_000);

const execFileAsync = promisify(execFile);

const MiB = 1024 * 1024;

const shared = new SharedCluster();

const record = async (volume: string) => JSON.parse((await shared.store.get(`volumes/${volume}`))!.value) as VolumeRecord;
const held = async (node: ChaosNode, volume: string) => (await node.api.copySnapshots(volume)).map((s) => s.name);
const listed = async (node: ChaosNode, volume: string) => (await node.api.listSnapshots(volume)).map((s) => s.name);
/** The export names node lists (NBD_OPT_LIST). */
const nbdList = async (node: ChaosNode) => {
  const { stdout } = await execFileAsync('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${node.weftd.nbdPort}`]);
  return (JSON.parse(stdout) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name']);
};
/** Whether node serves the export over NBD. */
const served = (node: ChaosNode, exportName: string) =>
  NbdClient.connect({ host: '127.0.0.1', port: node.weftd.nbdPort, exportName }).then(
    (client) => (client.close(), true),
    () => false,
  );

/**
 * The primary takes snapshot `name` of the volume, and is killed with -9 once the first other copy
 * holds it: the second copy's API is cut as soon as the record marks the snapshot, so that the
 * primary waits there (5 s). True if it was cut short (the record still marks it); false if the
 * primary made it all the same (the cut came too late): the caller tries again.
 */
async function cutShort(c: ChaosCluster, volume: string, name: string): Promise<{ killed: ChaosNode; first: ChaosNode; second: ChaosNode } | undefined> {
  const shown = await c.waitForVolume(volume, allInSync, 60_000, 'in sync');
  const primary = c.node(shown.replication!.primary);
  const [first, second] = shown.replication!.replicas.map((r) => c.node(r.node)).filter((n) => n !== primary);
  const watch = await shared.store.watch(`volumes/${volume}`, {}, (event) => {
    if (event.type === 'put' && (JSON.parse(event.value ?? '{}') as VolumeRecord).snapshotting === name) second.peerLinks[1].cut();
  });
  try {
    const outcome = primary.api.createSnapshot(volume, name).then(
      () => 'made',
      (err: Error) => err.message,
    );
    await waitFor(async () => (await held(first, volume)).includes(name), 10_000, 5);
    await c.kill9(primary);
    await outcome;
  } finally {
    await watch.close();
    second.peerLinks[1].heal();
  }
  if ((await record(volume)).snapshotting === name) return { killed: primary, first, second };
  await c.restart(primary);
  return undefined;
}

test('a snapshot cut short by the death of its primary is neither listed nor served, deleted from the copies that hold it once every copy is back, and can be taken again', async () => {
  await shared.start();
  const c = shared.cluster;
  await c.createOnN1('snap', 16 * MiB, 3);
  const made: string[] = []; // attempts the primary finished before it was killed: snapshots like any other
  let name = 's1';
  let cut: Awaited<ReturnType<typeof cutShort>>;
  while (!(cut = await cutShort(c, 'snap', name))) {
    made.push(name);
    expect(made.length).toBeLessThan(3);
    name = `s${made.length + 1}`;
  }
  const { killed, first } = cut;

  // Not a snapshot, while the record marks it: the copy that holds it neither lists nor serves it.
  expect(await held(first, 'snap')).toContain(name);
  expect(await listed(first, 'snap')).not.toContain(name);
  expect((await first.api.listSnapshots()).map((s) => s.name)).not.toContain(name);
  expect(await served(first, `snap@${name}`)).toBe(false);
  expect(await nbdList(first)).not.toContain(`snap@${name}`);

  // The new primary cannot ask the killed node whether it holds it: it stays, marked, until that node is back.
  const after = await c.waitForVolume('snap', (v) => v.replication?.primary !== killed.id, 30_000, 'failed over');
  const primary = c.node(after.replication!.primary);
  expect((await record('snap')).snapshotting).toBe(name);
  expect(await held(first, 'snap')).toContain(name);
  expect(await listed(primary, 'snap')).not.toContain(name);
  expect((await primary.weftd.weft(['volume', 'show', 'snap'])).stdout).toContain(`\nSnapshot not settled: ${name} (being taken, or cut short`);
  await expect(primary.api.deleteSnapshot('snap', name)).rejects.toThrow(`snapshot snap@${name} is being taken, or was cut short and is not settled yet`);

  // Every copy back in sync: on some copies only, it goes from them, with no operation asked for.
  await c.restart(killed);
  await c.waitForVolume('snap', allInSync, 60_000, 'in sync');
  await waitFor(async () => (await record('snap')).snapshotting === undefined, 15_000, 100);
  for (const node of c.nodes) expect(await held(node, 'snap')).toEqual(made);
  await waitFor(async () => (await primary.api.getVolume('snap')).replication?.snapshotting === '', 5000, 50);
  await waitFor(async () => new RegExp(`"snapshot":"${name}"[^\\n]*"msg":"deleted a snapshot cut short`).test(primary.weftd.logs()), 5000, 50);

  // The name is free again: taken on every copy, listed and served everywhere.
  await primary.api.createSnapshot('snap', name);
  expect((await record('snap')).snapshotting).toBeUndefined();
  for (const node of c.nodes) expect(await held(node, 'snap')).toEqual([...made, name]);
  expect(await listed(primary, 'snap')).toEqual([...made, name]);
  await waitFor(async () => (await Promise.all(c.nodes.map((n) => listed(n, 'snap')))).every((l) => l.join() === [...made, name].join()), 5000, 50);
  expect(await served(first, `snap@${name}`)).toBe(true);
  expect(await nbdList(first)).toContain(`snap@${name}`);
});

test('a marked snapshot that every copy holds is kept, and listed once the mark is cleared, with no operation asked for', async () => {
  const c = shared.cluster;
  await c.waitForNodesUp(30_000);
  const shown = await c.createOnN1('whole', 16 * MiB, 3);
  const [n1] = c.nodes;
  await n1.api.createSnapshot('whole', 'w1');
  // As a primary that took it on every copy, then died before its end was recorded, would leave it.
  const kv = (await shared.store.get('volumes/whole'))!;
  const { succeeded } = await shared.store.txn({
    compare: [{ key: 'volumes/whole', target: 'modRevision', op: '=', value: kv.modRevision }],
    success: [{ type: 'put', key: 'volumes/whole', value: JSON.stringify({ ...(JSON.parse(kv.value) as VolumeRecord), snapshotting: 'w1' }) }],
  });
  expect(succeeded).toBe(true);
  await waitFor(async () => (await record('whole')).snapshotting === undefined, 15_000, 50);
  for (const node of shown.replication!.replicas.map((r) => c.node(r.node))) expect(await held(node, 'whole')).toEqual(['w1']);
  await waitFor(async () => (await Promise.all(c.nodes.map((n) => listed(n, 'whole')))).every((l) => l.join() === 'w1'), 5000, 50);
  await waitFor(async () => /"snapshot":"w1"[^\n]*"msg":"a snapshot cut short had been taken on every copy: kept"/.test(n1.weftd.logs()), 5000, 50); // logged as the mark goes
  await n1.api.createSnapshot('whole', 'w2');
  expect((await record('whole')).snapshotting).toBeUndefined();
  for (const node of c.nodes) expect(await held(node, 'whole')).toEqual(['w1', 'w2']);
});

test('a snapshot of a name a copy already holds is refused before the record marks it (the mark could have it deleted)', async () => {
  const c = shared.cluster;
  const shown = await c.createOnN1('refused', 16 * MiB, 3);
  const [n1] = c.nodes;
  const [first, second] = shown.replication!.replicas.map((r) => c.node(r.node)).filter((n) => n !== n1);
  // A snapshot of that name on the second copy alone (as the others lack one that a replacement copy holds).
  await second.api.controlCopy('refused', { type: 'snapshot', name: 'taken' }, shown.replication!.epoch);
  const before = (await shared.store.get('volumes/refused'))!.modRevision;
  await expect(n1.api.createSnapshot('refused', 'taken')).rejects.toThrow(`snapshot refused@taken already exists (on ${second.id})`);
  expect((await shared.store.get('volumes/refused'))!.modRevision).toBe(before);
  expect(await held(first, 'refused')).toEqual([]);
  expect(await held(second, 'refused')).toEqual(['taken']);
});
