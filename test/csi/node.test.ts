// The CSI Node service of a real weftd, without attaching anything (the attach end-to-end test
// does that): NodeGetInfo, NodeGetCapabilities, and the status code of every RPC for missing
// fields, unknown volumes and volumes that are not staged here.

import * as fs from 'fs';
import * as path from 'path';
import { BLOCK_WRITER, CsiClient, MOUNT_WRITER } from '../helpers/csi-client';
import { cleanupAll, makeTempDir, startWeftd } from '../helpers/weftd';

let csi: CsiClient;
let work: string;
let dataDir: string;

beforeAll(async () => {
  work = makeTempDir('weft-csi-node-');
  ({ dataDir } = await startWeftd({
    pools: [`default:${makeTempDir('weft-pool-')}:1GiB`],
    extraArgs: ['--csi-endpoint', `unix://${path.join(work, 'csi.sock')}`, '--node-id', 'node-b', '--zone', 'rack-7'],
  }));
  csi = new CsiClient(path.join(work, 'csi.sock'));
  await csi.call('CreateVolume', { name: 'idle', volume_capabilities: [MOUNT_WRITER], capacity_range: { required_bytes: 4 << 20 } });
});
afterAll(async () => {
  csi?.close();
  await cleanupAll();
});

const staging = () => path.join(work, 'staging', 'idle');
const target = () => path.join(work, 'target', 'idle');

describe('NodeGetInfo and NodeGetCapabilities', () => {
  it('reports the node id, its volume limit and its topology (node and zone)', async () => {
    expect(await csi.call('NodeGetInfo')).toEqual({
      node_id: 'node-b',
      max_volumes_per_node: 128,
      accessible_topology: { segments: { 'topology.weft.io/node': 'node-b', 'topology.weft.io/zone': 'rack-7' } },
    });
  });

  it('offers stage/unstage, volume stats, expansion and volume conditions', async () => {
    const { capabilities } = await csi.call('NodeGetCapabilities');
    expect(capabilities.map((c) => c.rpc.type).sort()).toEqual(['EXPAND_VOLUME', 'GET_VOLUME_STATS', 'SINGLE_NODE_MULTI_WRITER', 'STAGE_UNSTAGE_VOLUME', 'VOLUME_CONDITION']);
  });
});

describe('NodeStageVolume', () => {
  const request = () => ({ volume_id: 'idle', staging_target_path: staging(), volume_capability: MOUNT_WRITER });

  it.each([
    ['no volume_id', { volume_id: '' }, /volume_id is required/],
    ['no staging_target_path', { staging_target_path: '' }, /staging_target_path is required/],
    ['no volume_capability', { volume_capability: null }, /volume_capability is required/],
    ['a relative staging path', { staging_target_path: 'relative/dir' }, /must be an absolute path/],
    ['a capability without access mode', { volume_capability: { mount: {} } }, /access_mode is required/],
  ])('is INVALID_ARGUMENT for %s', async (_, overrides, message) => {
    const error = await csi.failure('NodeStageVolume', { ...request(), ...overrides });
    expect({ code: error.code, details: error.details }).toEqual({ code: 3, details: expect.stringMatching(message) });
  });

  it('is NOT_FOUND for a volume that does not exist', async () => {
    expect(await csi.code('NodeStageVolume', { ...request(), volume_id: 'no-such-volume' })).toBe('NOT_FOUND');
    expect(await csi.code('NodeStageVolume', { ...request(), volume_id: 'not a volume id' })).toBe('NOT_FOUND');
  });

  it('is FAILED_PRECONDITION for a capability the volume cannot have', async () => {
    const multi = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
    expect(await csi.code('NodeStageVolume', { ...request(), volume_capability: multi })).toBe('FAILED_PRECONDITION');
  });
});

describe('NodeUnstageVolume', () => {
  it('needs volume_id and staging_target_path', async () => {
    expect(await csi.code('NodeUnstageVolume', { staging_target_path: staging() })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('NodeUnstageVolume', { volume_id: 'idle' })).toBe('INVALID_ARGUMENT');
  });

  it('is OK for a volume that is not staged, also one that does not exist (deleted since a reboot tore its stage down)', async () => {
    expect(await csi.code('NodeUnstageVolume', { volume_id: 'no-such-volume', staging_target_path: staging() })).toBe('OK');
    expect(await csi.code('NodeUnstageVolume', { volume_id: 'idle', staging_target_path: staging() })).toBe('OK');
  });
});

describe('NodePublishVolume', () => {
  const request = () => ({ volume_id: 'idle', staging_target_path: staging(), target_path: target(), volume_capability: MOUNT_WRITER });

  it.each([
    ['volume_id', { volume_id: '' }],
    ['target_path', { target_path: '' }],
    ['volume_capability', { volume_capability: null }],
    ['staging_target_path (required: the plugin stages)', { staging_target_path: '' }],
  ])('is INVALID_ARGUMENT without %s', async (_, overrides) => {
    expect(await csi.code('NodePublishVolume', { ...request(), ...overrides })).toBe('INVALID_ARGUMENT');
  });

  it('is FAILED_PRECONDITION for a volume that is not staged there', async () => {
    const unstaged = await csi.failure('NodePublishVolume', request());
    expect({ code: unstaged.code, details: unstaged.details }).toEqual({ code: 9, details: expect.stringMatching(/not staged at .*; NodeStageVolume first/) });
    expect(await csi.code('NodePublishVolume', { ...request(), volume_capability: BLOCK_WRITER })).toBe('FAILED_PRECONDITION');
  });

  it('is NOT_FOUND for a volume that does not exist', async () => {
    expect(await csi.code('NodePublishVolume', { ...request(), volume_id: 'no-such-volume' })).toBe('NOT_FOUND');
  });
});

describe('NodeUnpublishVolume', () => {
  it('needs volume_id and target_path', async () => {
    expect(await csi.code('NodeUnpublishVolume', { target_path: target() })).toBe('INVALID_ARGUMENT');
    expect(await csi.code('NodeUnpublishVolume', { volume_id: 'idle' })).toBe('INVALID_ARGUMENT');
  });

  it('is OK for a volume that is not published, also one that does not exist (deleted since a reboot tore its publication down)', async () => {
    expect(await csi.code('NodeUnpublishVolume', { volume_id: 'no-such-volume', target_path: target() })).toBe('OK');
    expect(await csi.code('NodeUnpublishVolume', { volume_id: 'idle', target_path: target() })).toBe('OK');
  });

  it('leaves alone a path it did not publish: a file or a directory the caller names stays', async () => {
    const file = path.join(work, 'precious.txt');
    const dir = path.join(work, 'somebody-elses-dir');
    fs.writeFileSync(file, 'keep me');
    fs.mkdirSync(dir, { recursive: true });
    for (const targetPath of [file, dir]) expect(await csi.code('NodeUnpublishVolume', { volume_id: 'idle', target_path: targetPath })).toBe('OK');
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    expect(fs.statSync(dir).isDirectory()).toBe(true);
  });
});

describe('a volume_id that is no volume name', () => {
  // A state file outside the plugin's state dir, as a volume_id of "../planted" would name it.
  it('is NOT_FOUND and reads no file outside the state dir (path traversal)', async () => {
    const victim = path.join(work, 'victim.txt');
    fs.writeFileSync(victim, 'keep me');
    const planted = path.join(dataDir, 'planted.json');
    const stagingPath = path.join(work, 'planted-staging');
    fs.writeFileSync(planted, JSON.stringify({ volume: '../planted', phase: 'staged', stagingPath, access: 'mount', publications: [{ targetPath: victim, readOnly: false, workload: {} }] }));
    expect(await csi.code('NodeUnpublishVolume', { volume_id: '../planted', target_path: victim })).toBe('NOT_FOUND');
    expect(await csi.code('NodeUnstageVolume', { volume_id: '../planted', staging_target_path: stagingPath })).toBe('NOT_FOUND');
    expect(await csi.code('NodeGetVolumeStats', { volume_id: '../planted', volume_path: victim })).toBe('NOT_FOUND');
    expect(fs.readFileSync(victim, 'utf8')).toBe('keep me');
    expect(fs.existsSync(planted)).toBe(true);
  });
});

describe('NodeGetVolumeStats and NodeExpandVolume', () => {
  it('need volume_id and volume_path', async () => {
    for (const method of ['NodeGetVolumeStats', 'NodeExpandVolume'] as const) {
      expect(await csi.code(method, { volume_path: staging() })).toBe('INVALID_ARGUMENT');
      expect(await csi.code(method, { volume_id: 'idle' })).toBe('INVALID_ARGUMENT');
    }
  });

  it('are NOT_FOUND for a volume that is not staged or published at that path', async () => {
    for (const method of ['NodeGetVolumeStats', 'NodeExpandVolume'] as const) {
      expect(await csi.code(method, { volume_id: 'idle', volume_path: staging() })).toBe('NOT_FOUND');
      expect(await csi.code(method, { volume_id: 'no-such-volume', volume_path: staging() })).toBe('NOT_FOUND');
      // A relative path names nothing staged or published (not a malformed request).
      expect(await csi.code(method, { volume_id: 'idle', volume_path: 'some/path' })).toBe('NOT_FOUND');
      expect(await csi.code(method, { volume_id: 'no-such-volume', volume_path: 'some/path' })).toBe('NOT_FOUND');
    }
  });
});
