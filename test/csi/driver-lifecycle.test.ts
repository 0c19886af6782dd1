// How weftd runs the CSI driver: the roles it serves, the socket it takes over or refuses, the
// node state it reconciles at start, and the attachments it keeps through its control API.

import { spawn } from 'node:child_process';
import * as fs from 'fs';
import * as path from 'path';
import { status } from '@grpc/grpc-js';
import { WeftApiError, WeftClient } from '../../fabric/api/client';
import { BLOCK_WRITER, CsiClient, MOUNT_WRITER } from '../helpers/csi-client';
import { expectNoLeftovers, forceCleanup, leftoversUnder } from '../helpers/mounts';
import { freePort } from '../helpers/free-port';
import { cleanupAll, makeTempDir, startWeftd, track, type WeftdHandle } from '../helpers/weftd';

afterAll(cleanupAll);

function poolArg(): string {
  return `default:${makeTempDir('weft-pool-')}:256MiB`;
}

async function startWithCsi(socketPath: string, ...args: string[]): Promise<WeftdHandle> {
  return startWeftd({ pools: [poolArg()], extraArgs: ['--csi-endpoint', `unix://${socketPath}`, ...args] });
}

async function withClient<T>(socketPath: string, use: (csi: CsiClient) => Promise<T>): Promise<T> {
  const csi = new CsiClient(socketPath);
  try {
    return await use(csi);
  } finally {
    csi.close();
  }
}

/** A socket file whose server was killed: nothing answers on it. */
async function staleSocket(socketPath: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`]);
  await new Promise((resolve) => child.stdout.once('data', resolve));
  await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGKILL');
  });
  expect(fs.statSync(socketPath).isSocket()).toBe(true);
}

describe('roles', () => {
  it('--csi-role controller serves Identity and Controller, not Node', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'csi.sock');
    const weftd = await startWithCsi(socketPath, '--csi-role', 'controller');
    expect(weftd.logs()).toMatch(/"roles":\["controller"\].*CSI driver serving controller/);
    await withClient(socketPath, async (csi) => {
      expect((await csi.call('GetPluginInfo')).name).toBe('csi.weft.io');
      expect(await csi.code('ListVolumes')).toBe('OK');
      expect(await csi.code('NodeGetInfo')).toBe('UNIMPLEMENTED');
    });
    await weftd.stop();
    expect(fs.existsSync(socketPath)).toBe(false);
  });

  it('--csi-role node serves Identity and Node, not Controller; it still reports the controller service', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'csi.sock');
    const weftd = await startWithCsi(socketPath, '--csi-role', 'node');
    expect(weftd.logs()).toMatch(/"roles":\["node"\].*CSI driver serving node/);
    await withClient(socketPath, async (csi) => {
      expect(await csi.code('NodeGetInfo')).toBe('OK');
      expect(await csi.code('ListVolumes')).toBe('UNIMPLEMENTED');
      expect((await csi.call('GetPluginCapabilities')).capabilities.map((c) => c.service?.type)).toContain('CONTROLLER_SERVICE');
    });
    await weftd.stop();
  });

  it('serves both by default, and logs it', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'nested', 'dir', 'csi.sock');
    const weftd = await startWithCsi(socketPath);
    expect(weftd.logs()).toMatch(/CSI driver serving controller and node/);
    await withClient(socketPath, async (csi) => {
      expect(await csi.code('NodeGetInfo')).toBe('OK');
      expect(await csi.code('ListVolumes')).toBe('OK');
      expect(await csi.code('ControllerExpandVolume', { volume_id: 'missing', capacity_range: { required_bytes: 4096 } })).toBe('NOT_FOUND');
    });
    // Each CSI call is counted beside the control API's, by method and status code.
    const metrics = await fetch(`http://127.0.0.1:${weftd.metricsPort}/metrics`).then((r) => r.text());
    expect(metrics).toContain('weft_api_requests_total{method="csi.v1.Node/NodeGetInfo",code="OK"} 1\n');
    expect(metrics).toContain('weft_api_requests_total{method="csi.v1.Controller/ControllerExpandVolume",code="NOT_FOUND"} 1\n');
    expect(metrics).toMatch(/weft_api_request_seconds_count\{method="csi.v1.Controller\/ListVolumes",code="OK"\} 1\n/);
    await weftd.stop();
  });
});

describe('the socket', () => {
  it('replaces a stale socket file that nothing answers on', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'csi.sock');
    await staleSocket(socketPath);
    const weftd = await startWithCsi(socketPath);
    await withClient(socketPath, async (csi) => expect(await csi.code('Probe')).toBe('OK'));
    await weftd.stop();
  });

  it('refuses a socket another weftd serves, and a path that is not a socket', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'csi.sock');
    const first = await startWithCsi(socketPath, '--csi-role', 'controller');
    await expect(startWithCsi(socketPath, '--csi-role', 'controller')).rejects.toThrow(/CSI endpoint .*csi\.sock is in use by another process/);
    await withClient(socketPath, async (csi) => expect(await csi.code('Probe')).toBe('OK'));
    await first.stop();

    const file = path.join(makeTempDir('weft-csi-'), 'not-a-socket');
    fs.writeFileSync(file, 'keep me');
    await expect(startWithCsi(file)).rejects.toThrow(/exists and is not a socket/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });
});

describe('node state at start', () => {
  let root: string | undefined;
  afterEach(async () => {
    if (root) await forceCleanup(root);
  });

  it('keeps a working attachment across a restart; tears a broken one down, unless it is still published', async () => {
    root = makeTempDir('weft-csi-reconcile-');
    const socketPath = path.join(root, 'csi.sock');
    const nbdPort = String(await freePort()); // the relay under each device finds a restarted weftd here
    const weftd = await startWeftd({ dataDir: path.join(root, 'data'), pools: [`default:${root}:256MiB`], extraArgs: ['--csi-endpoint', `unix://${socketPath}`, '--nbd-port', nbdPort] });
    const staging = (volume: string) => path.join(root!, 'staging', volume);
    const target = (volume: string) => path.join(root!, 'pods', volume, 'dev');
    await withClient(socketPath, async (csi) => {
      for (const volume of ['kept', 'broken', 'unused']) {
        await csi.call('CreateVolume', { name: volume, volume_capabilities: [BLOCK_WRITER], capacity_range: { required_bytes: 4 << 20 } });
        fs.mkdirSync(staging(volume), { recursive: true });
        fs.mkdirSync(path.dirname(target(volume)), { recursive: true });
        await csi.call('NodeStageVolume', { volume_id: volume, staging_target_path: staging(volume), volume_capability: BLOCK_WRITER });
        if (volume !== 'unused') await csi.call('NodePublishVolume', { volume_id: volume, staging_target_path: staging(volume), target_path: target(volume), volume_capability: BLOCK_WRITER });
      }
    });
    for (const volume of ['broken', 'unused']) {
      const state = JSON.parse(fs.readFileSync(path.join(weftd.dataDir, 'csi', `${volume}.json`), 'utf8')) as { attachment: { details: Record<string, string> } };
      process.kill(Number(state.attachment.details.nbdfusePid), 'SIGKILL');
    }

    await weftd.restart();
    expect(weftd.logs()).toMatch(/"volume":"kept".*kept the attachment of an earlier run/);
    // Staged only: undone. Published: a pod's mount, left for the CO to unpublish.
    expect(weftd.logs()).toMatch(/"volume":"unused","phase":"staged".*broken or unfinished/);
    expect(fs.existsSync(path.join(weftd.dataDir, 'csi', 'unused.json'))).toBe(false);
    expect(weftd.logs()).toMatch(/"volume":"broken".*the attachment of an earlier run is broken and still published/);
    expect(leftoversUnder(root).mounts.map((m) => m.target)).toContain(target('broken'));
    await withClient(socketPath, async (csi) => {
      const stats = await csi.call('NodeGetVolumeStats', { volume_id: 'kept', volume_path: target('kept') });
      expect(stats.volume_condition).toEqual({ abnormal: false, message: expect.stringMatching(/^attached at \/dev\/loop\d+/) });
      const broken = await csi.call('NodeGetVolumeStats', { volume_id: 'broken', volume_path: target('broken') });
      expect(broken.volume_condition).toMatchObject({ abnormal: true });
      for (const volume of ['kept', 'broken']) {
        await csi.call('NodeUnpublishVolume', { volume_id: volume, target_path: target(volume) });
        await csi.call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging(volume) });
      }
    });
    await weftd.stop();
    expectNoLeftovers(root);
  });

  it('cleans up a stage that a crash interrupted before anything was attached', async () => {
    const socketPath = path.join(makeTempDir('weft-csi-'), 'csi.sock');
    const weftd = await startWithCsi(socketPath);
    await withClient(socketPath, (csi) => csi.call('CreateVolume', { name: 'interrupted', volume_capabilities: [MOUNT_WRITER], capacity_range: { required_bytes: 4 << 20 } }));
    await weftd.kill9();
    const stateFile = path.join(weftd.dataDir, 'csi', 'interrupted.json');
    const stagingPath = path.join(makeTempDir('weft-staging-'), 'interrupted');
    const state = { volume: 'interrupted', stagingPath, access: 'mount', fsType: 'ext4', mountFlags: [], accessMode: 'SINGLE_NODE_WRITER', phase: 'attaching', publications: [] };
    fs.writeFileSync(stateFile, JSON.stringify(state));

    await weftd.start();
    expect(fs.existsSync(stateFile)).toBe(false);
    expect(weftd.logs()).toMatch(/"volume":"interrupted","phase":"attaching".*broken or unfinished/);
    await withClient(socketPath, async (csi) => expect(await csi.code('NodeUnstageVolume', { volume_id: 'interrupted', staging_target_path: stagingPath })).toBe('OK'));
    await weftd.stop();
  });
  it('cleans up a stage that a crash interrupted after the device was made, before its attachment was recorded', async () => {
    root = makeTempDir('weft-csi-midattach-');
    const socketPath = path.join(root, 'csi.sock');
    const weftd = await startWeftd({ dataDir: path.join(root, 'data'), pools: [`default:${root}:256MiB`], extraArgs: ['--csi-endpoint', `unix://${socketPath}`] });
    const stagingPath = path.join(root, 'staging', 'midway');
    await withClient(socketPath, async (csi) => {
      await csi.call('CreateVolume', { name: 'midway', volume_capabilities: [BLOCK_WRITER], capacity_range: { required_bytes: 4 << 20 } });
      await csi.call('NodeStageVolume', { volume_id: 'midway', staging_target_path: stagingPath, volume_capability: BLOCK_WRITER });
    });
    expect(leftoversUnder(root).loops).toHaveLength(1);
    // What a kill -9 inside attach() leaves: nbdfuse, its relay, the FUSE mount and the loop device
    // running, and a state file that names no attachment.
    await weftd.kill9();
    const stateFile = path.join(weftd.dataDir, 'csi', 'midway.json');
    const { attachment: _made, ...state } = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(stateFile, JSON.stringify({ ...state, phase: 'attaching' }));

    await weftd.start();
    expect(weftd.logs()).toMatch(/"volume":"midway","phase":"attaching".*broken or unfinished/);
    expect(fs.existsSync(stateFile)).toBe(false);
    expectNoLeftovers(root);
    await withClient(socketPath, async (csi) => {
      expect(await csi.code('NodeUnstageVolume', { volume_id: 'midway', staging_target_path: stagingPath })).toBe('OK');
      expect(await csi.code('DeleteVolume', { volume_id: 'midway' })).toBe('OK');
    });
    await weftd.stop();
  });

  it('leaves a stage that a tool of the crashed run still uses (an e2fsck or resize2fs outliving weftd), and undoes it once the tool has ended', async () => {
    root = makeTempDir('weft-csi-busy-');
    const socketPath = path.join(root, 'csi.sock');
    const nbdPort = String(await freePort()); // the relay under the device finds the restarted weftd here
    const weftd = await startWeftd({ dataDir: path.join(root, 'data'), pools: [`default:${root}:256MiB`], extraArgs: ['--csi-endpoint', `unix://${socketPath}`, '--nbd-port', nbdPort] });
    const stagingPath = path.join(root, 'staging', 'busy');
    const stage = { volume_id: 'busy', staging_target_path: stagingPath, volume_capability: BLOCK_WRITER };
    await withClient(socketPath, async (csi) => {
      await csi.call('CreateVolume', { name: 'busy', volume_capabilities: [BLOCK_WRITER], capacity_range: { required_bytes: 4 << 20 } });
      await csi.call('NodeStageVolume', stage);
    });
    const stateFile = path.join(weftd.dataDir, 'csi', 'busy.json');
    const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { attachment: { devicePath: string } };
    // A tool the stage ran, still reading the device when weftd is killed: the stage is unfinished.
    const tool = track(spawn('bash', ['-c', `exec 3<${state.attachment.devicePath}; exec sleep 120`], { stdio: 'ignore' }));
    await weftd.kill9();
    fs.writeFileSync(stateFile, JSON.stringify({ ...state, phase: 'attaching' }));

    await weftd.start();
    expect(weftd.logs()).toMatch(new RegExp(`"volume":"busy".*"pids":\\[${tool.pid}\\].*still in use`));
    expect(fs.existsSync(stateFile)).toBe(true);
    expect(leftoversUnder(root).loops).toHaveLength(1); // the device stays under the tool
    await withClient(socketPath, async (csi) => {
      expect(await csi.failure('NodeStageVolume', stage)).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(new RegExp(`still in use by process ${tool.pid}`)) });
      expect(await csi.code('NodeUnstageVolume', { volume_id: 'busy', staging_target_path: stagingPath })).toBe('UNAVAILABLE');
      tool.kill('SIGKILL');
      await new Promise((resolve) => tool.once('exit', resolve));
      await csi.call('NodeStageVolume', stage); // undone, then staged from the start
      await csi.call('NodeUnstageVolume', { volume_id: 'busy', staging_target_path: stagingPath });
      expect(await csi.code('DeleteVolume', { volume_id: 'busy' })).toBe('OK');
    });
    await weftd.stop();
    expectNoLeftovers(root);
  });
});

describe('AttachmentService', () => {
  let weftd: WeftdHandle;
  let client: WeftClient;
  const attachment = {
    volume: 'attached',
    nodeId: 'node-x',
    devicePath: '/dev/loop9',
    method: 'nbdfuse-loop',
    stagingPath: '/csi/staging/attached',
    workloads: [{ orchestrator: 'kubernetes', podName: 'web-0', podNamespace: 'shop', podUid: 'uid-1', targetPath: '/pods/uid-1/mount' }],
  };

  beforeAll(async () => {
    weftd = await startWeftd({ pools: [poolArg()] });
    client = new WeftClient(`127.0.0.1:${weftd.apiPort}`);
    await client.createVolume({ name: 'attached', sizeBytes: 4 << 20 });
  });
  afterAll(() => client?.close());

  async function failure(promise: Promise<unknown>): Promise<WeftApiError> {
    return promise.then(
      () => {
        throw new Error('expected a failure');
      },
      (error: WeftApiError) => error,
    );
  }

  it('records an attachment with its workloads and lists it, by volume and by node', async () => {
    const recorded = await client.recordAttachment(attachment);
    expect(recorded).toMatchObject({ ...attachment, workloads: [expect.objectContaining(attachment.workloads[0])] });
    expect(Date.parse(recorded.attachedAt)).toBeGreaterThan(0);
    expect(await client.listAttachments({ volume: 'attached' })).toEqual([recorded]);
    expect(await client.listAttachments({ nodeId: 'node-x' })).toEqual([recorded]);
    expect(await client.listAttachments({ nodeId: 'node-y' })).toEqual([]);
    const cli = await weftd.weft(['attachment', 'list', 'attached']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/attached\s+node-x\s+\/dev\/loop9\s+nbdfuse-loop\s+pod shop\/web-0/);
    const json = JSON.parse((await weftd.weft(['attachment', 'list', '--output', 'json'])).stdout);
    expect(json).toEqual([recorded]);
  });

  it('keeps the first attachedAt when the record is replaced, and keeps records across restarts', async () => {
    const first = (await client.listAttachments())[0];
    const replaced = await client.recordAttachment({ ...attachment, workloads: [] });
    expect(replaced).toMatchObject({ attachedAt: first.attachedAt, workloads: [] });
    await weftd.restart();
    client.close();
    client = new WeftClient(`127.0.0.1:${weftd.apiPort}`);
    expect(await client.listAttachments()).toEqual([replaced]);
  });

  it('refuses unknown volumes and missing fields; removing is idempotent', async () => {
    expect((await failure(client.recordAttachment({ ...attachment, volume: 'ghost' }))).code).toBe(status.NOT_FOUND);
    // A typo is not "not attached": listing a volume that does not exist fails.
    expect((await failure(client.listAttachments({ volume: 'ghost' }))).code).toBe(status.NOT_FOUND);
    const typo = await weftd.weft(['attachment', 'list', 'ghost']);
    expect({ code: typo.code, stderr: typo.stderr.trim() }).toEqual({ code: 1, stderr: 'weft: volume ghost does not exist' });
    const noNode = await failure(client.recordAttachment({ ...attachment, nodeId: '' }));
    expect({ code: noNode.code, message: noNode.message }).toEqual({ code: status.INVALID_ARGUMENT, message: 'node_id is required' });
    await client.removeAttachment('attached', 'node-x');
    await client.removeAttachment('attached', 'node-x');
    expect(await client.listAttachments()).toEqual([]);
    // An existing volume without attachments lists none.
    expect(await client.listAttachments({ volume: 'attached' })).toEqual([]);
    expect((await weftd.weft(['attachment', 'list', 'attached'])).stdout.trim()).toBe('no attachments');
  });
});
