// CSI conformance, the way csi-sanity checks a driver: every Identity and Controller RPC against a
// real weftd serving CSI on a unix socket, each one's idempotency, and the status code the spec
// names for each failure. Data written over NBD checks that clones carry their source's data.

import * as path from 'path';
import { pluginVersion } from '../../adapters/csi/identity-server';
import { BLOCK_WRITER, CsiClient, MOUNT_WRITER } from '../helpers/csi-client';
import type { PoolInfo, VolumeInfo } from '../../fabric/volume/types';
import { cleanupAll, makeTempDir, run, startWeftd, type RunResult, type WeftdHandle } from '../helpers/weftd';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const NODE_KEY = 'topology.weft.io/node';
const ZONE_KEY = 'topology.weft.io/zone';

let weftd: WeftdHandle;
let csi: CsiClient;
let socketPath: string;

beforeAll(async () => {
  const work = makeTempDir('weft-csi-');
  socketPath = path.join(work, 'csi.sock');
  weftd = await startWeftd({
    pools: [`default:${makeTempDir('weft-pool-')}:4GiB`, `ssd:${makeTempDir('weft-pool-')}:1GiB`],
    extraArgs: ['--csi-endpoint', `unix://${socketPath}`, '--zone', 'zone-a', '--node-id', 'node-a'],
  });
  csi = new CsiClient(socketPath);
});
afterAll(async () => {
  csi?.close();
  await cleanupAll();
});

/** A CreateVolume request; overrides replace fields. */
function volumeRequest(name: string, overrides: object = {}): object {
  return { name, volume_capabilities: [MOUNT_WRITER], capacity_range: { required_bytes: 64 * MiB }, ...overrides };
}

async function createVolume(name: string, overrides: object = {}) {
  return (await csi.call('CreateVolume', volumeRequest(name, overrides))).volume;
}

function qemuIo(volumeOrSnapshot: string, ...commands: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), weftd.nbdUri(volumeOrSnapshot)]);
}

/** Used bytes of each pool, by class, as `weft pool list` reports them. */
async function poolUsedBytes(): Promise<Record<string, number>> {
  const pools = JSON.parse((await weftd.weft(['--output', 'json', 'pool', 'list'])).stdout) as PoolInfo[];
  return Object.fromEntries(pools.map((p) => [p.class, p.usedBytes]));
}

async function expectPattern(volume: string, pattern: string): Promise<void> {
  const result = await qemuIo(volume, `read -P ${pattern} 0 64k`);
  expect({ code: result.code, output: result.stdout + result.stderr }).toMatchObject({ code: 0 });
}

describe('Identity', () => {
  it('GetPluginInfo names the plugin csi.weft.io with Weft’s version', async () => {
    expect(await csi.call('GetPluginInfo')).toMatchObject({ name: 'csi.weft.io', vendor_version: pluginVersion() });
    expect(pluginVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('GetPluginCapabilities: controller service, topology constraints, online expansion', async () => {
    const { capabilities } = await csi.call('GetPluginCapabilities');
    expect(capabilities.map((c) => c.service?.type ?? `expansion:${c.volume_expansion?.type}`).sort()).toEqual(
      ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'expansion:ONLINE'].sort(),
    );
  });

  it('Probe is ready', async () => {
    expect(await csi.call('Probe')).toEqual({ ready: { value: true } });
  });
});

describe('ControllerGetCapabilities', () => {
  it('lists what the controller does', async () => {
    const { capabilities } = await csi.call('ControllerGetCapabilities');
    expect(capabilities.map((c) => c.rpc.type).sort()).toEqual(
      ['CREATE_DELETE_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME', 'EXPAND_VOLUME', 'GET_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'].sort(),
    );
  });

  it('RPCs it does not offer are UNIMPLEMENTED', async () => {
    expect(await csi.code('ControllerPublishVolume', { volume_id: 'x', node_id: 'node-a', volume_capability: MOUNT_WRITER })).toBe('UNIMPLEMENTED');
    expect(await csi.code('GetSnapshot', { snapshot_id: 'x@y' })).toBe('UNIMPLEMENTED');
  });
});

describe('CreateVolume', () => {
  it.each([
    ['no name', { name: '' }, /name is required/],
    ['no capabilities', { volume_capabilities: [] }, /volume_capabilities is required/],
    ['a capability without access mode', { volume_capabilities: [{ mount: {} }] }, /access_mode is required/],
    ['a capability without access type', { volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }, /access_type/],
    ['a multi-node access mode', { volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }, /MULTI_NODE_MULTI_WRITER is not supported/],
    ['an unknown filesystem', { volume_capabilities: [{ mount: { fs_type: 'btrfs' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }, /fs_type "btrfs"/],
    ['an unknown parameter', { parameters: { size: '1G' } }, /parameter "size"/],
    ['a negative size', { capacity_range: { required_bytes: -1 } }, /must not be negative/],
    ['required above limit', { capacity_range: { required_bytes: 2 * MiB, limit_bytes: MiB } }, /more than limit_bytes/],
    ['an unknown class', { parameters: { class: 'nvme' } }, /no pool of class "nvme"/],
  ])('refuses %s with INVALID_ARGUMENT', async (_, overrides, message) => {
    const error = await csi.failure('CreateVolume', volumeRequest('refused', overrides));
    expect({ code: error.code, details: error.details }).toEqual({ code: 3, details: expect.stringMatching(message) });
  });

  it('makes a 1 GiB volume in the default class when no size is asked for, reachable from this node', async () => {
    const volume = await createVolume('plain', { capacity_range: null });
    expect(volume).toMatchObject({
      volume_id: 'plain',
      capacity_bytes: GiB,
      volume_context: { class: 'default' },
      content_source: null,
      accessible_topology: [{ segments: { [NODE_KEY]: 'node-a' } }],
    });
  });

  it('rounds sizes up to 4 KiB, within limit_bytes; OUT_OF_RANGE when rounding would pass the limit', async () => {
    expect((await createVolume('rounded', { capacity_range: { required_bytes: 10_000_001, limit_bytes: 11_000_000 } })).capacity_bytes).toBe(10_002_432);
    expect(await csi.code('CreateVolume', volumeRequest('tight', { capacity_range: { required_bytes: 5000, limit_bytes: 6000 } }))).toBe('OUT_OF_RANGE');
  });

  it('is idempotent: the same name and arguments give the same volume; other sizes, classes or sources ALREADY_EXISTS', async () => {
    const first = await createVolume('twice', { capacity_range: { required_bytes: 64 * MiB, limit_bytes: 64 * MiB } });
    const again = await createVolume('twice', { capacity_range: { required_bytes: 64 * MiB, limit_bytes: 64 * MiB } });
    expect(again).toEqual(first);
    expect(await createVolume('twice', { capacity_range: { required_bytes: 32 * MiB } })).toEqual(first);
    const bigger = await csi.failure('CreateVolume', volumeRequest('twice', { capacity_range: { required_bytes: 128 * MiB, limit_bytes: 128 * MiB } }));
    expect({ code: bigger.code, details: bigger.details }).toEqual({ code: 6, details: expect.stringMatching(/outside capacity_range/) });
    expect(await csi.code('CreateVolume', volumeRequest('twice', { parameters: { class: 'ssd' } }))).toBe('ALREADY_EXISTS');
    expect(await csi.code('CreateVolume', volumeRequest('twice', { volume_content_source: { volume: { volume_id: 'plain' } } }))).toBe('ALREADY_EXISTS');
  });

  it("takes csi-provisioner's --extra-create-metadata parameters, keeping the claim in the context, again on a repeat", async () => {
    const metadata = { 'csi.storage.k8s.io/pvc/name': 'data-web-0', 'csi.storage.k8s.io/pvc/namespace': 'shop', 'csi.storage.k8s.io/pv/name': 'pvc-claimed' };
    const claimed = await createVolume('pvc-claimed', { parameters: { class: 'ssd', ...metadata } });
    expect(claimed.volume_context).toEqual({ class: 'ssd', 'csi.storage.k8s.io/pvc/name': 'data-web-0', 'csi.storage.k8s.io/pvc/namespace': 'shop' });
    expect(await createVolume('pvc-claimed', { parameters: { class: 'ssd', ...metadata } })).toEqual(claimed);
    const validated = await csi.call('ValidateVolumeCapabilities', {
      volume_id: 'pvc-claimed', volume_capabilities: [MOUNT_WRITER], volume_context: claimed.volume_context, parameters: { class: 'ssd', ...metadata },
    });
    expect(validated.confirmed?.volume_context).toEqual(claimed.volume_context);
    await csi.call('DeleteVolume', { volume_id: 'pvc-claimed' });
  });

  it('places a volume in the class its parameters name; RESOURCE_EXHAUSTED when the pool cannot hold it', async () => {
    expect((await createVolume('fast', { parameters: { class: 'ssd', replicas: '1', locality: 'true' } })).volume_context).toEqual({ class: 'ssd' });
    expect(await csi.code('CreateVolume', volumeRequest('too-big', { parameters: { class: 'ssd' }, capacity_range: { required_bytes: 2 * GiB } }))).toBe('RESOURCE_EXHAUSTED');
  });

  it('passes replicas on to placement: more than the cluster has nodes is RESOURCE_EXHAUSTED, and makes nothing', async () => {
    const error = await csi.failure('CreateVolume', volumeRequest('replicated', { parameters: { replicas: '3' } }));
    expect({ code: error.code, details: error.details }).toEqual({ code: 8, details: expect.stringMatching(/3 replicas need 3 nodes .* 1 qualify/) });
    expect(await csi.code('ControllerGetVolume', { volume_id: 'replicated' })).toBe('NOT_FOUND');
  });

  it('maps long and odd names to valid volume ids, the same one every time, also after a restart', async () => {
    const long = `pvc-${'0123456789abcdef'.repeat(8)}`.slice(0, 128);
    const odd = 'team/db data ü';
    const first = await createVolume(long);
    const oddVolume = await createVolume(odd);
    expect(first.volume_id).toMatch(/^pvc-0123456789abcdef[0-9a-f-]*\.h[0-9a-f]{16}$/);
    expect(first.volume_id.length).toBeLessThanOrEqual(63);
    expect(oddVolume.volume_id).toMatch(/^team-db-data--\.h[0-9a-f]{16}$/);
    await weftd.restart();
    csi.close();
    csi = new CsiClient(socketPath);
    expect((await createVolume(long)).volume_id).toBe(first.volume_id);
    expect(await csi.code('CreateVolume', volumeRequest(long, { capacity_range: { required_bytes: 128 * MiB } }))).toBe('ALREADY_EXISTS');
  });

  describe('topology', () => {
    const here = { segments: { [NODE_KEY]: 'node-a', [ZONE_KEY]: 'zone-a' } };
    const elsewhere = { segments: { [NODE_KEY]: 'node-b', [ZONE_KEY]: 'zone-a' } };

    it('makes the volume when a requisite topology includes this node', async () => {
      const volume = await createVolume('topo-ok', { accessibility_requirements: { requisite: [elsewhere, here], preferred: [here] } });
      expect(volume.accessible_topology).toEqual([here]); // the node's segments, zone too, as NodeGetInfo reports them
      expect((await createVolume('topo-zone', { accessibility_requirements: { requisite: [{ segments: { [ZONE_KEY]: 'zone-a' } }] } })).volume_id).toBe('topo-zone');
    });

    it('is RESOURCE_EXHAUSTED when no requisite topology includes it', async () => {
      const error = await csi.failure('CreateVolume', volumeRequest('topo-no', { accessibility_requirements: { requisite: [elsewhere] } }));
      expect({ code: error.code, details: error.details }).toEqual({ code: 8, details: expect.stringMatching(/no requisite topology includes/) });
      expect(await csi.code('CreateVolume', volumeRequest('topo-no', { accessibility_requirements: { requisite: [{ segments: { [ZONE_KEY]: 'zone-b' } }] } }))).toBe('RESOURCE_EXHAUSTED');
    });

    it('treats preferred topologies as a wish', async () => {
      expect((await createVolume('topo-preferred', { accessibility_requirements: { preferred: [elsewhere] } })).volume_id).toBe('topo-preferred');
    });

    it('with locality, makes the volume where the workload runs (the first preferred topology) when that is this node', async () => {
      const requirement = { requisite: [elsewhere, here], preferred: [here, elsewhere] };
      const volume = await createVolume('local', { parameters: { locality: 'true' }, accessibility_requirements: requirement });
      expect(volume.accessible_topology).toEqual([here]); // the node's segments, zone too, as NodeGetInfo reports them
    });

    it('with locality, refuses a workload on another node (RESOURCE_EXHAUSTED, so the CO schedules again), and makes nothing', async () => {
      const requirement = { requisite: [elsewhere, here], preferred: [elsewhere, here] };
      const error = await csi.failure('CreateVolume', volumeRequest('remote', { parameters: { locality: 'true' }, accessibility_requirements: requirement }));
      expect({ code: error.code, details: error.details }).toEqual({ code: 8, details: expect.stringMatching(/locality "true" .*node-b.* on its own node node-a/) });
      expect(await csi.code('ControllerGetVolume', { volume_id: 'remote' })).toBe('NOT_FOUND');
    });
  });
});

describe('DeleteVolume', () => {
  it('needs a volume_id', async () => {
    expect(await csi.code('DeleteVolume', {})).toBe('INVALID_ARGUMENT');
  });

  it('deletes, and succeeds again for a volume that is gone or never was', async () => {
    await createVolume('doomed');
    expect(await csi.code('DeleteVolume', { volume_id: 'doomed' })).toBe('OK');
    expect(await csi.code('DeleteVolume', { volume_id: 'doomed' })).toBe('OK');
    expect(await csi.code('ControllerGetVolume', { volume_id: 'doomed' })).toBe('NOT_FOUND');
    expect(await csi.code('DeleteVolume', { volume_id: 'never-was' })).toBe('OK');
    expect(await csi.code('DeleteVolume', { volume_id: 'not/a valid id' })).toBe('OK');
  });

  it('deletes a volume that has snapshots; they stay listed and restorable until deleted themselves', async () => {
    await createVolume('has-snap');
    const { snapshot } = await csi.call('CreateSnapshot', { source_volume_id: 'has-snap', name: 'held' });
    expect(await csi.code('DeleteVolume', { volume_id: 'has-snap' })).toBe('OK');
    const listed = await csi.call('ListSnapshots', { snapshot_id: snapshot.snapshot_id });
    expect(listed.entries.map((e) => e.snapshot.snapshot_id)).toEqual([snapshot.snapshot_id]);
    const { volume } = await csi.call('CreateVolume', {
      name: 'from-orphan',
      volume_capabilities: [MOUNT_WRITER],
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(volume.content_source?.snapshot?.snapshot_id).toBe(snapshot.snapshot_id);
    expect(await csi.code('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id })).toBe('OK');
    expect(await csi.code('DeleteVolume', { volume_id: 'from-orphan' })).toBe('OK');
  });

  it('a retried DeleteVolume of a volume whose snapshot remains answers OK; the snapshot stays readable', async () => {
    await createVolume('retried');
    expect((await qemuIo('retried', 'write -P 0x3c 0 64k', 'flush')).code).toBe(0);
    const { snapshot } = await csi.call('CreateSnapshot', { source_volume_id: 'retried', name: 'kept' });
    expect(await csi.code('DeleteVolume', { volume_id: 'retried' })).toBe('OK');
    // The CO retries when it missed the first answer (a timeout, a restart): CSI asks for OK again.
    expect(await csi.code('DeleteVolume', { volume_id: 'retried' })).toBe('OK');
    expect((await csi.call('ListSnapshots', { snapshot_id: snapshot.snapshot_id })).entries).toHaveLength(1);
    const read = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x3c 0 64k', weftd.nbdUri(snapshot.snapshot_id)]);
    expect({ code: read.code, output: read.stdout + read.stderr }).toMatchObject({ code: 0 });
    expect(await csi.code('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id })).toBe('OK');
  });
});

describe('ValidateVolumeCapabilities', () => {
  beforeAll(() => createVolume('validated'));

  it('needs a volume_id and capabilities; an unknown volume is NOT_FOUND', async () => {
    expect(await csi.code('ValidateVolumeCapabilities', { volume_capabilities: [MOUNT_WRITER] })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('ValidateVolumeCapabilities', { volume_id: 'validated' })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('ValidateVolumeCapabilities', { volume_id: 'nope', volume_capabilities: [MOUNT_WRITER] })).toBe('NOT_FOUND');
  });

  it('confirms supported capabilities', async () => {
    const result = await csi.call('ValidateVolumeCapabilities', { volume_id: 'validated', volume_capabilities: [MOUNT_WRITER, BLOCK_WRITER], volume_context: { class: 'default' } });
    expect(result.confirmed?.volume_capabilities).toHaveLength(2);
    expect(result.confirmed?.volume_context).toEqual({ class: 'default' });
  });

  it('confirms nothing, and says why, for unsupported capabilities or another class', async () => {
    const multi = await csi.call('ValidateVolumeCapabilities', { volume_id: 'validated', volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }] });
    expect(multi).toEqual({ confirmed: null, message: expect.stringMatching(/MULTI_NODE_READER_ONLY is not supported/) });
    const ssd = await csi.call('ValidateVolumeCapabilities', { volume_id: 'validated', volume_capabilities: [MOUNT_WRITER], parameters: { class: 'ssd' } });
    expect(ssd).toEqual({ confirmed: null, message: 'volume validated is in class default, not ssd' });
  });
});

describe('ListVolumes and ControllerGetVolume', () => {
  const names = ['page-1', 'page-2', 'page-3', 'page-4', 'page-5'];
  beforeAll(async () => {
    for (const name of names) await createVolume(name, { capacity_range: { required_bytes: 4 * MiB } });
  });

  it('lists every volume with its status', async () => {
    const { entries, next_token } = await csi.call('ListVolumes', {});
    expect(next_token).toBe('');
    expect(entries.map((e) => e.volume.volume_id)).toEqual(expect.arrayContaining(names));
    expect(entries.find((e) => e.volume.volume_id === 'page-1')).toEqual({
      volume: expect.objectContaining({ volume_id: 'page-1', capacity_bytes: 4 * MiB }),
      status: { published_node_ids: [], volume_condition: { abnormal: false, message: 'healthy' } },
    });
  });

  it('pages with max_entries and next_token, without repeats or gaps', async () => {
    const all = (await csi.call('ListVolumes', {})).entries.map((e) => e.volume.volume_id);
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const result = await csi.call('ListVolumes', { max_entries: 2, starting_token: token });
      expect(result.entries.length).toBeLessThanOrEqual(2);
      seen.push(...result.entries.map((e) => e.volume.volume_id));
      token = result.next_token;
      pages++;
    } while (token);
    expect(seen).toEqual([...all].sort());
    expect(pages).toBe(Math.ceil(all.length / 2));
  });

  it('accepts a token whose last volume was deleted, and sees volumes added after it', async () => {
    const first = await csi.call('ListVolumes', { max_entries: 1, starting_token: '' });
    const last = first.entries[0].volume.volume_id;
    await createVolume('zz-added', { capacity_range: { required_bytes: 4 * MiB } });
    await csi.call('DeleteVolume', { volume_id: last });
    const rest = await csi.call('ListVolumes', { starting_token: first.next_token });
    const ids = rest.entries.map((e) => e.volume.volume_id);
    expect(ids).not.toContain(last);
    expect(ids).toContain('zz-added');
  });

  it('is ABORTED for a token it did not give out, INVALID_ARGUMENT for negative max_entries', async () => {
    expect(await csi.code('ListVolumes', { starting_token: 'invalid-token' })).toBe('ABORTED');
    expect(await csi.code('ListVolumes', { max_entries: -1 })).toBe('INVALID_ARGUMENT');
  });

  it('ControllerGetVolume answers the volume and its condition; NOT_FOUND and INVALID_ARGUMENT as the spec says', async () => {
    expect(await csi.call('ControllerGetVolume', { volume_id: 'page-2' })).toEqual({
      volume: expect.objectContaining({ volume_id: 'page-2', capacity_bytes: 4 * MiB, volume_context: { class: 'default' } }),
      status: { published_node_ids: [], volume_condition: { abnormal: false, message: 'healthy' } },
    });
    expect(await csi.code('ControllerGetVolume', { volume_id: 'missing' })).toBe('NOT_FOUND');
    expect(await csi.code('ControllerGetVolume', {})).toBe('INVALID_ARGUMENT');
  });
});

describe('GetCapacity', () => {
  it("reports the free space of the class's pool and the largest volume it can hold", async () => {
    const [all, ssd] = await Promise.all([csi.call('GetCapacity', {}), csi.call('GetCapacity', { parameters: { class: 'ssd' } })]);
    expect(all.maximum_volume_size?.value).toBeGreaterThan(3 * GiB);
    expect(all.available_capacity).toBeGreaterThan(0);
    expect(all.available_capacity).toBeLessThanOrEqual(all.maximum_volume_size!.value);
    expect(ssd.maximum_volume_size?.value).toBeLessThanOrEqual(GiB);
    expect(ssd.maximum_volume_size?.value).toBeGreaterThan(GiB / 2);
  });

  it('counts the topology and the capabilities: 0 where no volume could be made', async () => {
    const here = await csi.call('GetCapacity', { accessible_topology: { segments: { [NODE_KEY]: 'node-a' } }, volume_capabilities: [BLOCK_WRITER] });
    expect(here.available_capacity).toBeGreaterThan(0);
    expect((await csi.call('GetCapacity', { accessible_topology: { segments: { [NODE_KEY]: 'node-b' } } })).available_capacity).toBe(0);
    expect((await csi.call('GetCapacity', { parameters: { class: 'tape' } })).available_capacity).toBe(0);
    expect((await csi.call('GetCapacity', { volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] })).available_capacity).toBe(0);
    expect(await csi.code('GetCapacity', { parameters: { speed: 'fast' } })).toBe('INVALID_ARGUMENT');
  });
});

describe('CreateSnapshot, DeleteSnapshot and ListSnapshots', () => {
  beforeAll(async () => {
    await createVolume('snap-src', { capacity_range: { required_bytes: 8 * MiB } });
    await createVolume('snap-other', { capacity_range: { required_bytes: 8 * MiB } });
  });

  it('need a name and a source; an unknown source is NOT_FOUND', async () => {
    expect(await csi.code('CreateSnapshot', { source_volume_id: 'snap-src' })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('CreateSnapshot', { name: 'x' })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('CreateSnapshot', { name: 'x', source_volume_id: 'no-such-volume' })).toBe('NOT_FOUND');
    expect(await csi.code('CreateSnapshot', { name: 'x', source_volume_id: 'snap-src', parameters: { retention: '7d' } })).toBe('INVALID_ARGUMENT');
  });

  it('creates a ready snapshot named VOLUME@SNAPSHOT, the same one when asked twice', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { snapshot } = await csi.call('CreateSnapshot', { source_volume_id: 'snap-src', name: 'daily' });
    expect(snapshot).toMatchObject({ snapshot_id: 'snap-src@daily', source_volume_id: 'snap-src', size_bytes: 8 * MiB, ready_to_use: true });
    expect(snapshot.creation_time!.seconds).toBeGreaterThanOrEqual(before - 1);
    expect((await csi.call('CreateSnapshot', { source_volume_id: 'snap-src', name: 'daily' })).snapshot).toEqual(snapshot);
  });

  it('is ALREADY_EXISTS for the same name on another volume', async () => {
    const error = await csi.failure('CreateSnapshot', { source_volume_id: 'snap-other', name: 'daily' });
    expect({ code: error.code, details: error.details }).toEqual({ code: 6, details: expect.stringMatching(/taken by a snapshot of volume snap-src/) });
  });

  it('maps a 128-character name like volume names, idempotently', async () => {
    const name = 'a'.repeat(128);
    const first = (await csi.call('CreateSnapshot', { source_volume_id: 'snap-src', name })).snapshot;
    expect(first.snapshot_id).toMatch(/^snap-src@a{44}\.h[0-9a-f]{16}$/);
    expect((await csi.call('CreateSnapshot', { source_volume_id: 'snap-src', name })).snapshot.snapshot_id).toBe(first.snapshot_id);
    await csi.call('DeleteSnapshot', { snapshot_id: first.snapshot_id });
  });

  it('lists by snapshot id and by source volume; unknown ones list nothing', async () => {
    await csi.call('CreateSnapshot', { source_volume_id: 'snap-other', name: 'weekly' });
    const ids = async (request: object) => (await csi.call('ListSnapshots', request)).entries.map((e) => e.snapshot.snapshot_id);
    expect(await ids({})).toEqual(expect.arrayContaining(['snap-src@daily', 'snap-other@weekly']));
    expect(await ids({ snapshot_id: 'snap-src@daily' })).toEqual(['snap-src@daily']);
    expect(await ids({ source_volume_id: 'snap-other' })).toEqual(['snap-other@weekly']);
    expect(await ids({ snapshot_id: 'snap-src@daily', source_volume_id: 'snap-other' })).toEqual([]);
    expect(await ids({ snapshot_id: 'none-exist-id' })).toEqual([]);
    expect(await ids({ snapshot_id: 'snap-src@none' })).toEqual([]);
    expect(await ids({ source_volume_id: 'no-such-volume' })).toEqual([]);
  });

  it('pages snapshots; a foreign token is ABORTED', async () => {
    for (const n of [1, 2, 3]) await csi.call('CreateSnapshot', { source_volume_id: 'snap-other', name: `paged-${n}` });
    const all = (await csi.call('ListSnapshots', {})).entries.map((e) => e.snapshot.snapshot_id);
    const first = await csi.call('ListSnapshots', { max_entries: 2 });
    expect(first.entries).toHaveLength(2);
    const rest = await csi.call('ListSnapshots', { starting_token: first.next_token });
    expect(rest.next_token).toBe('');
    expect([...first.entries, ...rest.entries].map((e) => e.snapshot.snapshot_id)).toEqual([...all].sort());
    expect(await csi.code('ListSnapshots', { starting_token: 'invalid-token' })).toBe('ABORTED');
  });

  it('deletes, and succeeds again for a snapshot that is gone or never was', async () => {
    expect(await csi.code('DeleteSnapshot', {})).toBe('INVALID_ARGUMENT');
    await csi.call('CreateSnapshot', { source_volume_id: 'snap-src', name: 'short-lived' });
    expect(await csi.code('DeleteSnapshot', { snapshot_id: 'snap-src@short-lived' })).toBe('OK');
    expect(await csi.code('DeleteSnapshot', { snapshot_id: 'snap-src@short-lived' })).toBe('OK');
    expect((await csi.call('ListSnapshots', { snapshot_id: 'snap-src@short-lived' })).entries).toEqual([]);
    expect(await csi.code('DeleteSnapshot', { snapshot_id: 'reallyfakesnapshotid' })).toBe('OK');
  });
});

describe('volumes from snapshots and from volumes', () => {
  beforeAll(async () => {
    await createVolume('origin', { capacity_range: { required_bytes: 16 * MiB } });
    const written = await qemuIo('origin', 'write -P 0x5a 0 64k', 'flush');
    expect(written.code).toBe(0);
    await csi.call('CreateSnapshot', { source_volume_id: 'origin', name: 'golden' });
    expect((await qemuIo('origin', 'write -P 0x77 0 64k', 'flush')).code).toBe(0);
  });

  const fromSnapshot = (id: string) => ({ volume_content_source: { snapshot: { snapshot_id: id } } });
  const fromVolume = (id: string) => ({ volume_content_source: { volume: { volume_id: id } } });

  it('restores a snapshot with its data, at least its size, idempotently', async () => {
    const restored = await createVolume('restored', { capacity_range: null, ...fromSnapshot('origin@golden') });
    expect(restored).toMatchObject({ capacity_bytes: 16 * MiB, content_source: { snapshot: { snapshot_id: 'origin@golden' } } });
    await expectPattern('restored', '0x5a');
    expect(await createVolume('restored', { capacity_range: null, ...fromSnapshot('origin@golden') })).toEqual(restored);
    expect(await csi.code('CreateVolume', volumeRequest('restored', { capacity_range: null }))).toBe('ALREADY_EXISTS');
    const bigger = await createVolume('restored-big', { capacity_range: { required_bytes: 32 * MiB }, ...fromSnapshot('origin@golden') });
    expect(bigger.capacity_bytes).toBe(32 * MiB);
  });

  it('refuses a restore below the snapshot size (OUT_OF_RANGE), an unknown snapshot (NOT_FOUND), an unknown class (INVALID_ARGUMENT)', async () => {
    expect(await csi.code('CreateVolume', volumeRequest('small', { capacity_range: { limit_bytes: 8 * MiB }, ...fromSnapshot('origin@golden') }))).toBe('OUT_OF_RANGE');
    expect(await csi.code('CreateVolume', volumeRequest('lost', fromSnapshot('origin@missing')))).toBe('NOT_FOUND');
    expect(await csi.code('CreateVolume', volumeRequest('lost', fromSnapshot('non-existing-snapshot-id')))).toBe('NOT_FOUND');
    expect(await csi.code('CreateVolume', volumeRequest('lost', fromSnapshot('')))).toBe('INVALID_ARGUMENT');
    expect(await csi.code('CreateVolume', volumeRequest('lost', { ...fromSnapshot('origin@golden'), parameters: { class: 'nvme' } }))).toBe('INVALID_ARGUMENT');
  });

  it("restores into another class: new writes go to that class's pool, the rest is read from the snapshot's", async () => {
    const request = { capacity_range: null, parameters: { class: 'ssd' }, ...fromSnapshot('origin@golden') };
    const restored = await createVolume('restored-ssd', request);
    expect(restored).toMatchObject({ volume_context: { class: 'ssd' }, content_source: { snapshot: { snapshot_id: 'origin@golden' } } });
    await expectPattern('restored-ssd', '0x5a');
    expect(await createVolume('restored-ssd', request)).toEqual(restored);
    expect(await csi.code('CreateVolume', volumeRequest('restored-ssd', { ...request, parameters: { class: 'default' } }))).toBe('ALREADY_EXISTS');

    const before = await poolUsedBytes();
    expect((await qemuIo('restored-ssd', 'write -P 0x21 1M 256k', 'flush')).code).toBe(0);
    expect(await poolUsedBytes()).toEqual({ default: before.default, ssd: before.ssd + 256 * 1024 });
    const shown = JSON.parse((await weftd.weft(['--output', 'json', 'volume', 'show', 'restored-ssd'])).stdout) as VolumeInfo;
    expect(shown.layers).toEqual([
      { class: 'ssd', allocatedBytes: 256 * 1024 },
      { snapshot: { volume: 'origin', name: 'golden' }, class: 'default', allocatedBytes: 64 * 1024 },
    ]);
    expect(await csi.code('DeleteVolume', { volume_id: 'restored-ssd' })).toBe('OK');
    expect(await poolUsedBytes()).toEqual(before);
  });

  it('clones a volume into another class, and leaves no snapshot behind', async () => {
    const clone = await createVolume('cloned-ssd', { capacity_range: null, parameters: { class: 'ssd' }, ...fromVolume('origin') });
    expect(clone).toMatchObject({ volume_context: { class: 'ssd' }, content_source: { volume: { volume_id: 'origin' } } });
    await expectPattern('cloned-ssd', '0x77');
    const snapshots = (await csi.call('ListSnapshots', { source_volume_id: 'origin' })).entries.map((e) => e.snapshot.snapshot_id);
    expect(snapshots).toEqual(['origin@golden']);
    expect(await csi.code('DeleteVolume', { volume_id: 'cloned-ssd' })).toBe('OK');
  });

  it('clones a volume with its current data, and leaves no snapshot behind', async () => {
    const clone = await createVolume('cloned', { capacity_range: null, ...fromVolume('origin') });
    expect(clone).toMatchObject({ capacity_bytes: 16 * MiB, content_source: { volume: { volume_id: 'origin' } } });
    await expectPattern('cloned', '0x77');
    expect(await createVolume('cloned', { capacity_range: null, ...fromVolume('origin') })).toEqual(clone);
    const snapshots = (await csi.call('ListSnapshots', { source_volume_id: 'origin' })).entries.map((e) => e.snapshot.snapshot_id);
    expect(snapshots).toEqual(['origin@golden']);
    const weftSnapshots = await weftd.weft(['--output', 'json', 'snapshot', 'list', 'origin']);
    expect((JSON.parse(weftSnapshots.stdout) as { name: string }[]).map((s) => s.name)).toEqual(['golden']);
    expect(await csi.code('CreateVolume', volumeRequest('orphan', fromVolume('no-such-volume')))).toBe('NOT_FOUND');
  });

  it('keeps source and clone independent: deleting the source leaves the clone whole', async () => {
    await createVolume('clone-src', { capacity_range: { required_bytes: 4 * MiB } });
    expect((await qemuIo('clone-src', 'write -P 0x3c 0 64k', 'flush')).code).toBe(0);
    await createVolume('clone-dst', { capacity_range: null, ...fromVolume('clone-src') });
    expect(await csi.code('DeleteVolume', { volume_id: 'clone-src' })).toBe('OK');
    await expectPattern('clone-dst', '0x3c');
    expect(await csi.code('DeleteVolume', { volume_id: 'clone-dst' })).toBe('OK');
  });
});

describe('ControllerExpandVolume', () => {
  beforeAll(() => createVolume('growing', { capacity_range: { required_bytes: 16 * MiB } }));

  it('needs a volume id and a capacity range; an unknown volume is NOT_FOUND', async () => {
    expect(await csi.code('ControllerExpandVolume', { capacity_range: { required_bytes: 32 * MiB } })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('ControllerExpandVolume', { volume_id: 'growing' })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('ControllerExpandVolume', { volume_id: 'missing', capacity_range: { required_bytes: 32 * MiB } })).toBe('NOT_FOUND');
    const multi = { volume_id: 'growing', capacity_range: { required_bytes: 32 * MiB }, volume_capability: { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } } };
    expect(await csi.code('ControllerExpandVolume', multi)).toBe('INVALID_ARGUMENT');
  });

  it('grows the volume to the size asked for; the filesystem must grow on the node', async () => {
    const grown = await csi.call('ControllerExpandVolume', { volume_id: 'growing', capacity_range: { required_bytes: 32 * MiB }, volume_capability: MOUNT_WRITER });
    expect(grown).toEqual({ capacity_bytes: 32 * MiB, node_expansion_required: true });
    expect((await csi.call('ControllerGetVolume', { volume_id: 'growing' })).volume.capacity_bytes).toBe(32 * MiB);
  });

  it('is idempotent and never shrinks; block access needs the node step too (the device learns its size there)', async () => {
    expect(await csi.call('ControllerExpandVolume', { volume_id: 'growing', capacity_range: { required_bytes: 32 * MiB } })).toEqual({ capacity_bytes: 32 * MiB, node_expansion_required: true });
    expect(await csi.call('ControllerExpandVolume', { volume_id: 'growing', capacity_range: { required_bytes: 8 * MiB }, volume_capability: BLOCK_WRITER })).toEqual({
      capacity_bytes: 32 * MiB,
      node_expansion_required: true,
    });
  });

  it('is OUT_OF_RANGE beyond what the pool can hold or the limit allows', async () => {
    expect(await csi.code('ControllerExpandVolume', { volume_id: 'growing', capacity_range: { required_bytes: 64 * GiB } })).toBe('OUT_OF_RANGE');
    expect(await csi.code('ControllerExpandVolume', { volume_id: 'growing', capacity_range: { required_bytes: 40 * MiB, limit_bytes: 40 * MiB - 1 } })).toBe('INVALID_ARGUMENT');
  });
});
