// The CSI controller provisioning for the cluster, with real parts: a real etcd, the controller on a
// weftd without pools (--pool none), two weftd with pools, one of them serving the CSI node service.
// A volume's primary goes on the node the topology names first, it is staged and published (ext4,
// nbdfuse + loop) through the node service's own node, and DeleteVolume removes every copy. Both
// nodes with pools serve the CSI node service: a volume is staged on one of them at a time.

import fs from 'node:fs';
import path from 'node:path';
import type { ClusterNode } from '../../fabric/cluster/membership';
import type { VolumeInfo } from '../../fabric/volume/types';
import { expectFiles, writeFiles } from '../helpers/attach-data';
import { CsiClient } from '../helpers/csi-client';
import { startEtcd } from '../helpers/etcd';
import { freePort } from '../helpers/free-port';
import { failOnLeftoversAfterEach, forceCleanup, nbdConnections } from '../helpers/mounts';
import { qemuIo } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const NODE_KEY = 'topology.weft.io/node';
const EXT4_WRITER = { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

let controller: WeftdHandle;
/** Both serve the CSI node service; most tests attach on node-a. */
let nodeA: WeftdHandle;
let nodeB: WeftdHandle;
let controllerCsi: CsiClient;
let nodeCsi: CsiClient;
let nodeBCsi: CsiClient;
/** Staging and target paths, as a CO would make them. */
let root: string;
/** node-a's and node-b's temp dirs: their data dirs hold the attachments' work dirs. */
let nodeADir: string;
let nodeBDir: string;

beforeAll(async () => {
  root = makeTempDir('weft-csi-cluster-');
  const etcd = await startEtcd(1);
  const member = (id: string) => ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1'];
  const pool = () => `default:${makeTempDir('weft-pool-')}:${256 * MiB}`;
  // A fixed NBD port for the node service's node, as for every attach test (the relay reconnects to it).
  nodeA = await startWeftd({ pools: [pool()], extraArgs: [...member('node-a'), '--nbd-port', String(await freePort()), '--csi-endpoint', `unix://${root}/node.sock`, '--csi-role', 'node'] });
  nodeB = await startWeftd({ pools: [pool()], extraArgs: [...member('node-b'), '--nbd-port', String(await freePort()), '--csi-endpoint', `unix://${root}/node-b.sock`, '--csi-role', 'node'] });
  controller = await startWeftd({ pools: ['none'], extraArgs: [...member('weft-controller'), '--csi-endpoint', `unix://${root}/controller.sock`, '--csi-role', 'controller'] });
  nodeADir = path.dirname(nodeA.dataDir);
  nodeBDir = path.dirname(nodeB.dataDir);
  controllerCsi = new CsiClient(path.join(root, 'controller.sock'));
  nodeCsi = new CsiClient(path.join(root, 'node.sock'));
  nodeBCsi = new CsiClient(path.join(root, 'node-b.sock'));
});

failOnLeftoversAfterEach(() => [root, nodeADir, nodeBDir]);

afterAll(async () => {
  controllerCsi?.close();
  nodeCsi?.close();
  nodeBCsi?.close();
  for (const dir of [root, nodeADir, nodeBDir]) if (dir) await forceCleanup(dir);
  await cleanupAll();
});

async function weftJson<T>(via: WeftdHandle, args: string[]): Promise<T> {
  const result = await via.weft([...args, '--output', 'json']);
  if (result.code !== 0) throw new Error(`weft ${args.join(' ')} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

const at = (node: string) => ({ segments: { [NODE_KEY]: node } });

/** CreateVolume through the controller, as Kubernetes asks with WaitForFirstConsumer (the pod's node preferred first). */
async function createVolume(name: string, parameters: Record<string, string>, preferred: string[], source?: object) {
  const requirement = { requisite: [at('node-a'), at('node-b')], preferred: preferred.map(at) };
  const { volume } = await controllerCsi.call('CreateVolume', {
    name,
    capacity_range: { required_bytes: 64 * MiB },
    volume_capabilities: [EXT4_WRITER],
    parameters,
    accessibility_requirements: requirement,
    volume_content_source: source,
  });
  return volume;
}

/** Where the cluster keeps the volume, as a node that serves the CSI node service answers. */
async function copies(name: string): Promise<{ primary: string; nodes: string[] }> {
  const shown = await weftJson<VolumeInfo>(nodeA, ['volume', 'show', name]);
  return { primary: shown.replication!.primary, nodes: shown.replication!.replicas.map((r) => r.node).sort() };
}

/**
 * Stages and publishes on node-a, runs use on the mounted filesystem, then unpublishes and unstages;
 * node-a then counts as many connections to the volume as before (a primary's replication
 * connection to node-a's copy counts too, so not always none).
 */
async function onNodeA<T>(volumeId: string, use: (target: string) => T): Promise<T> {
  const before = await nbdConnections(nodeA, volumeId);
  const staging = path.join(root, 'staging', volumeId);
  const target = path.join(root, 'pods', volumeId, 'mount');
  await nodeCsi.call('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: EXT4_WRITER });
  await nodeCsi.call('NodePublishVolume', { volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: EXT4_WRITER });
  const result = use(target);
  await nodeCsi.call('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
  await nodeCsi.call('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
  expect(fs.existsSync(target)).toBe(false);
  await waitFor(async () => (await nbdConnections(nodeA, volumeId)) === before, 5000, 100);
  return result;
}

/** Files written on node-a are there when the volume is attached again. */
async function useOnNodeA(volumeId: string): Promise<void> {
  const files = await onNodeA(volumeId, (target) => writeFiles(target));
  await onNodeA(volumeId, (target) => expectFiles(target, files));
}

async function snapshotNames(via: WeftdHandle, volume: string): Promise<string[]> {
  return (await weftJson<{ name: string }[]>(via, ['snapshot', 'list', volume])).map((s) => s.name);
}

/** DeleteVolume through the controller: no node knows the volume any more. */
async function deleteVolume(volumeId: string): Promise<void> {
  await controllerCsi.call('DeleteVolume', { volume_id: volumeId });
  expect(await controllerCsi.code('ControllerGetVolume', { volume_id: volumeId })).toBe('NOT_FOUND');
  for (const node of [nodeA, nodeB]) expect((await node.weft(['volume', 'show', volumeId])).code).not.toBe(0);
}

test('the controller\'s weftd is a member of the cluster with no pool: a volume asked of it is placed on a node with one', async () => {
  const nodes = await weftJson<ClusterNode[]>(controller, ['node', 'list']);
  expect(nodes.map((n) => [n.id, n.state, n.pools.length])).toEqual([['node-a', 'up', 1], ['node-b', 'up', 1], ['weft-controller', 'up', 0]]);
  const placed = await weftJson<VolumeInfo>(controller, ['volume', 'create', 'here', '--size', '1MiB']);
  expect(placed.replication?.replicas.map((r) => r.node)).toEqual([expect.stringMatching(/^node-[ab]$/)]);
  expect((await controller.weft(['volume', 'delete', 'here'])).code).toBe(0);
});

test('replicas "1" with locality: the copy is on the pod\'s node; staged, published and written there; deleted', async () => {
  const volume = await createVolume('local-one', { replicas: '1', locality: 'true' }, ['node-a', 'node-b']);
  expect(volume.accessible_topology).toEqual([]); // attachable on every node
  expect(await copies(volume.volume_id)).toEqual({ primary: 'node-a', nodes: ['node-a'] });
  await useOnNodeA(volume.volume_id);
  await deleteVolume(volume.volume_id);
});

test('replicas "1" preferred on another node: the copy is there, and the node service attaches through its own node', async () => {
  const volume = await createVolume('remote-one', { replicas: '1' }, ['node-b', 'node-a']);
  expect(await copies(volume.volume_id)).toEqual({ primary: 'node-b', nodes: ['node-b'] });
  await useOnNodeA(volume.volume_id);
  await deleteVolume(volume.volume_id);
});

test('the node named first cannot hold the volume (the controller, no pool): placed on a node with room, unless locality asks for that node', async () => {
  // With Immediate binding, Kubernetes names the same node first at every retry.
  const volume = await createVolume('elsewhere', { replicas: '1' }, ['weft-controller', 'node-a']);
  expect((await copies(volume.volume_id)).nodes).toEqual([expect.stringMatching(/^node-[ab]$/)]);
  await deleteVolume(volume.volume_id);
  const refused = await controllerCsi.failure('CreateVolume', {
    name: 'there-or-nowhere',
    capacity_range: { required_bytes: 64 * MiB },
    volume_capabilities: [EXT4_WRITER],
    parameters: { replicas: '1', locality: 'true' },
    accessibility_requirements: { requisite: [at('node-a'), at('node-b')], preferred: [at('weft-controller')] },
  });
  expect(refused.code).toBe(8); // RESOURCE_EXHAUSTED: the CO schedules the workload again
  expect((await controller.weft(['volume', 'show', 'there-or-nowhere'])).code).not.toBe(0);
});

test('replicas "2": a copy on each node with a pool, the primary where preferred; used on node-a; deleted everywhere', async () => {
  const volume = await createVolume('two', { replicas: '2' }, ['node-b']);
  expect(await copies(volume.volume_id)).toEqual({ primary: 'node-b', nodes: ['node-a', 'node-b'] });
  await useOnNodeA(volume.volume_id);
  await deleteVolume(volume.volume_id);
});

test('clones of a replicated volume, from its snapshot and from the volume itself: copies where the snapshot is, the files there', async () => {
  const source = await createVolume('origin', { replicas: '2' }, ['node-b']);
  const files = await onNodeA(source.volume_id, (target) => writeFiles(target));
  const { snapshot } = await controllerCsi.call('CreateSnapshot', { source_volume_id: source.volume_id, name: 'origin-snap' });
  // The primary goes where the topology prefers, as for a new volume (both nodes hold the snapshot).
  const fromSnapshot = await createVolume('from-snap', { replicas: '2' }, ['node-b'], { snapshot: { snapshot_id: snapshot.snapshot_id } });
  expect(fromSnapshot.content_source).toMatchObject({ snapshot: { snapshot_id: snapshot.snapshot_id } });
  expect(await copies(fromSnapshot.volume_id)).toEqual({ primary: 'node-b', nodes: ['node-a', 'node-b'] });
  const fromVolume = await createVolume('from-vol', { replicas: '1' }, ['node-b'], { volume: { volume_id: source.volume_id } });
  expect(fromVolume.content_source).toMatchObject({ volume: { volume_id: source.volume_id } });
  expect(await copies(fromVolume.volume_id)).toEqual({ primary: 'node-b', nodes: ['node-b'] });
  for (const clone of [fromSnapshot, fromVolume]) await onNodeA(clone.volume_id, (target) => expectFiles(target, files));
  // Each clone is written apart from its origin, which keeps its files.
  await useOnNodeA(fromSnapshot.volume_id);
  await onNodeA(source.volume_id, (target) => expectFiles(target, files));
  await deleteVolume(fromSnapshot.volume_id);
  await deleteVolume(fromVolume.volume_id);
  await controllerCsi.call('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
  await deleteVolume(source.volume_id);
});

test('a snapshot outlives its volume: after DeleteVolume it is listed, restored and deleted through the controller, and nothing stays', async () => {
  const source = await createVolume('kept-origin', { replicas: '2' }, ['node-b']);
  const files = await onNodeA(source.volume_id, (target) => writeFiles(target));
  const { snapshot } = await controllerCsi.call('CreateSnapshot', { source_volume_id: source.volume_id, name: 'kept-snap' });
  await deleteVolume(source.volume_id);

  const listed = await controllerCsi.call('ListSnapshots', { snapshot_id: snapshot.snapshot_id });
  expect(listed.entries.map((e: { snapshot: object }) => e.snapshot)).toEqual([expect.objectContaining({ snapshot_id: snapshot.snapshot_id, source_volume_id: source.volume_id, ready_to_use: true })]);
  // Verified where it is kept; asked of a node that keeps none, it is not "absent" (NOT_FOUND).
  expect((await nodeA.weft(['volume', 'verify', `${source.volume_id}@kept-snap`])).code).toBe(0);
  const elsewhere = await controller.weft(['volume', 'verify', `${source.volume_id}@kept-snap`]);
  expect(elsewhere.stderr).toMatch(/is not on this node: verify it through a node that holds it/);
  const restored = await createVolume('kept-restored', { replicas: '2' }, ['node-a'], { snapshot: { snapshot_id: snapshot.snapshot_id } });
  await onNodeA(restored.volume_id, (target) => expectFiles(target, files));
  await deleteVolume(restored.volume_id);

  await controllerCsi.call('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
  expect((await controllerCsi.call('ListSnapshots', { snapshot_id: snapshot.snapshot_id })).entries).toEqual([]);
  for (const node of [controller, nodeA, nodeB]) {
    expect((await weftJson<{ volume: string }[]>(node, ['snapshot', 'list'])).filter((s) => s.volume === source.volume_id)).toEqual([]);
  }
  // Its name is free again: no node keeps anything of it.
  expect((await weftJson<VolumeInfo>(controller, ['volume', 'create', source.volume_id, '--size', '1MiB'])).name).toBe(source.volume_id);
  expect((await controller.weft(['volume', 'delete', source.volume_id])).code).toBe(0);
});

test('a volume is staged on one node at a time: another node is refused, naming the first (across its restart), until it is unstaged there', async () => {
  const { volume_id: id } = await createVolume('one-at-a-time', { replicas: '2' }, ['node-a']);
  const stage = (node: string) => ({ volume_id: id, staging_target_path: path.join(root, `staging-${node}`, id), volume_capability: EXT4_WRITER });
  await nodeCsi.call('NodeStageVolume', stage('a'));
  const before = await nbdConnections(nodeB, id); // the primary's replication connection to node-b's copy
  const refused = await nodeBCsi.failure('NodeStageVolume', stage('b'));
  expect({ code: refused.code, details: refused.details }).toEqual({ code: 9, details: expect.stringContaining(`volume ${id} is attached on node node-a: a volume is attached on one node at a time`) });
  expect(await nbdConnections(nodeB, id)).toBe(before);
  // node-a's weftd restarted (its lease, and the claim on it, end with the old process): the attachment
  // it keeps is claimed again on the new lease.
  await nodeA.restart();
  await waitFor(async () => nodeA.logs().includes('kept the attachment of an earlier run'), 10_000, 100);
  expect((await nodeBCsi.failure('NodeStageVolume', stage('b'))).details).toContain(`volume ${id} is attached on node node-a`);
  // Staged again where it is: the same claim.
  await nodeCsi.call('NodeStageVolume', stage('a'));
  await nodeCsi.call('NodeUnstageVolume', { volume_id: id, staging_target_path: stage('a').staging_target_path });
  await nodeBCsi.call('NodeStageVolume', stage('b'));
  expect((await nodeCsi.failure('NodeStageVolume', stage('a'))).details).toContain(`volume ${id} is attached on node node-b`);
  // Nor is it deleted while staged (a PV released before its node has unstaged it): the CO tries again.
  const inUse = await controllerCsi.failure('DeleteVolume', { volume_id: id });
  expect({ code: inUse.code, details: inUse.details }).toEqual({ code: 9, details: expect.stringContaining(`volume ${id} is attached on node node-b (staged there): unstage it before deleting`) });
  expect((await controllerCsi.call('ControllerGetVolume', { volume_id: id })).volume.volume_id).toBe(id);
  await nodeBCsi.call('NodeUnstageVolume', { volume_id: id, staging_target_path: stage('b').staging_target_path });

  // node-a's weftd stopped while staged (its claim ends with its lease), node-b staged it meanwhile:
  // staged again on node-a, which still has it mounted, it is ABORTED (not final: a final error
  // would have the CO take it for unmounted and never unstage it there).
  await nodeCsi.call('NodeStageVolume', stage('a'));
  await nodeA.stop();
  await waitFor(() => nodeBCsi.call('NodeStageVolume', stage('b')).then(() => true, () => false), 15_000, 200);
  await nodeA.start();
  const again = await nodeCsi.failure('NodeStageVolume', stage('a'));
  expect({ code: again.code, details: again.details }).toEqual({ code: 10, details: expect.stringContaining(`volume ${id} is attached on node node-b`) });
  expect(again.details).toContain('it stays staged on this node, its writes refused, until it is unstaged');
  // node-b first: node-a's unmount writes, which its relay retries for 30 s while they are refused.
  await nodeBCsi.call('NodeUnstageVolume', { volume_id: id, staging_target_path: stage('b').staging_target_path });
  await nodeCsi.call('NodeUnstageVolume', { volume_id: id, staging_target_path: stage('a').staging_target_path });
  await deleteVolume(id);
});

test('more replicas than nodes with pools (the controller holds none) is RESOURCE_EXHAUSTED, and makes nothing', async () => {
  const tooMany = await controllerCsi.failure('CreateVolume', { name: 'three', volume_capabilities: [EXT4_WRITER], capacity_range: { required_bytes: MiB }, parameters: { replicas: '3' } });
  expect({ code: tooMany.code, details: tooMany.details }).toEqual({ code: 8, details: expect.stringMatching(/3 replicas need 3 nodes .* 2 qualify .*weft-controller has no pool of class default/) });
  expect(await controllerCsi.code('ControllerGetVolume', { volume_id: 'three' })).toBe('NOT_FOUND');
});

test('GetCapacity counts the pools of the nodes within the topology, none of the controller\'s', async () => {
  const capacity = async (topology?: object) => (await controllerCsi.call('GetCapacity', { accessible_topology: topology })).available_capacity;
  expect(await capacity()).toBeGreaterThan(128 * MiB);
  expect(await capacity(at('node-b'))).toBeGreaterThan(128 * MiB);
  expect(await capacity(at('weft-controller'))).toBe(0);
});

test('GetCapacity for volumes of several copies: the least room among the nodes they would take; 0 with too few nodes', async () => {
  const capacity = async (replicas: number, topology?: object) =>
    (await controllerCsi.call('GetCapacity', { parameters: { replicas: String(replicas) }, accessible_topology: topology })).available_capacity;
  const free = async () => {
    const nodes = await weftJson<ClusterNode[]>(controller, ['node', 'list']);
    return nodes.filter((n) => n.pools.length > 0).map((n) => n.pools[0].capacityBytes - n.pools[0].usedBytes);
  };
  // One node fuller than the other: a volume of two copies has only the smaller room.
  expect((await nodeB.weft(['volume', 'create', 'fill-b', '--size', String(32 * MiB), '--locality', 'node-b'])).code).toBe(0);
  const data = path.join(makeTempDir('weft-fill-'), 'data');
  fs.writeFileSync(data, Buffer.alloc(32 * MiB, 0x5a));
  expect((await run('nbdcopy', [data, nodeB.nbdUri('fill-b')])).code).toBe(0);
  // The nodes report their pools every 10 s, each on its own clock (an earlier test's deletes may
  // still be on their way): wait for node-b's report of the fill, then read the capacities between
  // two reports that agree.
  await waitFor(async () => Math.max(...(await free())) - Math.min(...(await free())) >= 32 * MiB, 20_000, 200);
  let seen: { rooms: number[]; capacities: number[] } | undefined;
  await waitFor(async () => {
    const rooms = await free();
    const capacities = [await capacity(2), await capacity(2, at('node-a')), await capacity(1), await capacity(3), await capacity(2, at('weft-controller'))];
    seen = { rooms, capacities };
    return JSON.stringify(await free()) === JSON.stringify(rooms);
  }, 30_000, 200);
  const [a, b] = seen!.rooms;
  // Two copies: the smaller room (with node-a asked for, the other copy goes to node-b); one copy:
  // the larger; three: none (two nodes with pools); none on the controller, which has no pool.
  expect(seen!.capacities).toEqual([Math.min(a, b), Math.min(a, b), Math.max(a, b), 0, 0]);
  expect((await nodeB.weft(['volume', 'delete', 'fill-b'])).code).toBe(0);
});

test('a volume one node holds alone (made there without replicas, as `weft nomad volume create` does) is found by the controller: validated, shown with that node\'s topology, expanded and deleted there', async () => {
  await weftJson<VolumeInfo>(nodeB, ['volume', 'create', 'alone', '--size', '32MiB']);
  // Nomad's registration asks the controller to validate it (the plugin has a controller service).
  const validated = await controllerCsi.call('ValidateVolumeCapabilities', { volume_id: 'alone', volume_capabilities: [EXT4_WRITER] });
  expect(validated.confirmed).toBeTruthy();
  const { volume } = await controllerCsi.call('ControllerGetVolume', { volume_id: 'alone' });
  expect(volume.accessible_topology).toEqual([at('node-b')]);
  const expanded = await controllerCsi.call('ControllerExpandVolume', { volume_id: 'alone', capacity_range: { required_bytes: 48 * MiB } });
  expect(Number(expanded.capacity_bytes)).toBe(48 * MiB);
  expect((await weftJson<VolumeInfo>(nodeB, ['volume', 'show', 'alone'])).sizeBytes).toBe(48 * MiB);
  // Its snapshots are made, listed and deleted on node-b: asked of the controller's own weftd, a
  // CreateSnapshot was NOT_FOUND and a DeleteSnapshot answered OK and left the snapshot there.
  const { snapshot } = await controllerCsi.call('CreateSnapshot', { source_volume_id: 'alone', name: 'alone-snap' });
  expect(snapshot).toMatchObject({ source_volume_id: 'alone', ready_to_use: true });
  expect((await controllerCsi.call('CreateSnapshot', { source_volume_id: 'alone', name: 'alone-snap' })).snapshot.snapshot_id).toBe(snapshot.snapshot_id); // a retry
  expect(await snapshotNames(nodeB, 'alone')).toEqual(['alone-snap']);
  const listed = await controllerCsi.call('ListSnapshots', { source_volume_id: 'alone' });
  expect(listed.entries.map((e: { snapshot: { snapshot_id: string } }) => e.snapshot.snapshot_id)).toEqual([snapshot.snapshot_id]);
  await controllerCsi.call('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
  expect(await snapshotNames(nodeB, 'alone')).toEqual([]);
  await deleteVolume('alone'); // it used to answer OK and leave the volume on node-b
});

test('a volume one node holds alone is restored from its snapshot and cloned through the controller, on that node, with its data', async () => {
  await weftJson<VolumeInfo>(nodeB, ['volume', 'create', 'alone-src', '--size', '32MiB']);
  await qemuIo(`nbd://127.0.0.1:${nodeB.nbdPort}/alone-src`, ['write -P 0x5a 0 1M']);
  const { snapshot } = await controllerCsi.call('CreateSnapshot', { source_volume_id: 'alone-src', name: 'alone-src-snap' });
  await qemuIo(`nbd://127.0.0.1:${nodeB.nbdPort}/alone-src`, ['write -P 0x6b 0 1M']); // after the snapshot
  // Asked of the controller's weftd, a restore was NOT_FOUND: the snapshot is on node-b alone.
  const made = async (name: string, source: object, parameters: Record<string, string> = {}) =>
    (await controllerCsi.call('CreateVolume', { name, capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [EXT4_WRITER], parameters, volume_content_source: source })).volume!;
  const restored = await made('alone-restored', { snapshot: { snapshot_id: snapshot!.snapshot_id } });
  const cloned = await made('alone-cloned', { volume: { volume_id: 'alone-src' } });
  for (const [volume, pattern] of [[restored, '0x5a'], [cloned, '0x6b']] as const) {
    expect(volume.accessible_topology).toEqual([at('node-b')]);
    expect((await weftJson<VolumeInfo>(nodeB, ['volume', 'show', volume.volume_id])).replication).toBeUndefined();
    await qemuIo(`nbd://127.0.0.1:${nodeB.nbdPort}/${volume.volume_id}`, [`read -P ${pattern} 0 1M`], true);
  }
  // A retry answers with the same volume; more copies cannot be made from a volume of one node.
  expect((await made('alone-restored', { snapshot: { snapshot_id: snapshot!.snapshot_id } })).volume_id).toBe(restored.volume_id);
  expect(await controllerCsi.code('CreateVolume', { name: 'alone-two', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [EXT4_WRITER], parameters: { replicas: '2' }, volume_content_source: { volume: { volume_id: 'alone-src' } } })).toBe('INVALID_ARGUMENT');
  expect(await snapshotNames(nodeB, 'alone-src')).toEqual(['alone-src-snap']); // the clone's own snapshot is gone
  for (const volume of [restored.volume_id, cloned.volume_id]) await deleteVolume(volume);
  await controllerCsi.call('DeleteSnapshot', { snapshot_id: snapshot!.snapshot_id });
  await deleteVolume('alone-src');
});

test('DeleteVolume of a volume that a node that is down holds alone is UNAVAILABLE, and deletes it once that node is back', async () => {
  await weftJson<VolumeInfo>(nodeB, ['volume', 'create', 'alone-down', '--size', '32MiB']);
  await nodeB.stop(); // a clean stop: node-b is down at once, its registration naming its own volumes
  try {
    const listed = await weftJson<ClusterNode[]>(nodeA, ['node', 'list']);
    expect(listed.find((n) => n.id === 'node-b')).toMatchObject({ state: 'down', ownVolumes: ['alone-down'] });
    // It answered OK, and the volume stayed on node-b for good once the CO had forgotten it.
    expect(await controllerCsi.code('DeleteVolume', { volume_id: 'alone-down' })).toBe('UNAVAILABLE');
    expect(await controllerCsi.code('ControllerGetVolume', { volume_id: 'alone-down' })).toBe('UNAVAILABLE');
    // A volume that no node holds is still gone at once.
    expect(await controllerCsi.code('DeleteVolume', { volume_id: 'never-made' })).toBe('OK');
  } finally {
    await nodeB.start();
  }
  await deleteVolume('alone-down');
});

test('a replicated volume with a copy out of sync is an abnormal condition through the controller (which holds no copy), healthy again once resynced', async () => {
  const volume = await createVolume('condition', { replicas: '2' }, ['node-a']);
  const condition = async () => (await controllerCsi.call('ControllerGetVolume', { volume_id: volume.volume_id })).status!.volume_condition!;
  expect(await condition()).toEqual({ abnormal: false, message: 'healthy' });
  await nodeB.stop();
  try {
    // A write the copy on node-b misses takes it out of the in-sync set.
    await qemuIo(`nbd://127.0.0.1:${nodeA.nbdPort}/${volume.volume_id}`, ['write -P 7 0 64k', 'flush']);
    await waitFor(async () => (await condition()).abnormal === true, 10_000, 200);
    expect((await condition()).message).toMatch(/^copies not in sync: node-b (out|failed) \(1 in sync\)/);
    const listed = await controllerCsi.call('ListVolumes', {});
    const entry = listed.entries.find((e) => e.volume!.volume_id === volume.volume_id);
    expect(entry?.status?.volume_condition?.abnormal).toBe(true);
  } finally {
    await nodeB.start();
  }
  await waitFor(async () => (await condition()).abnormal === false, 30_000, 250);
  await deleteVolume(volume.volume_id);
});
