// deploy/nomad, parsed with HashiCorp's HCL parser (@cdktf/hcl2json): the plugin jobs run the image the
// Dockerfile builds with flags weftd accepts, on the socket Nomad expects; the volume files and the
// example job agree with each other and with what the driver accepts.

import fs from 'node:fs';
import path from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { parseSnapshotId } from '../../adapters/csi/names';
import { parseParameters } from '../../adapters/csi/parameters';
import { FS_TYPES } from '../../adapters/csi/validate';
import { allocationIdFromTargetPath } from '../../adapters/nomad/alloc-id';
import { NOMAD_PLUGIN_ID } from '../../adapters/nomad/registration';
import { ACCESS_MODES, ATTACHMENT_MODES } from '../../adapters/nomad/types';
import { DEPLOY_DIR, dockerfileFacts } from '../deploy/dockerfile';
import { flagValue, parseWeftdArgs, socketPath } from '../deploy/weftd-args';

// hcl2json gives every block as a list of bodies, labelled blocks as { label: [body] }.
type Body = Record<string, unknown>;
const one = (blocks: unknown, label?: string): Body => {
  const list = (label === undefined ? blocks : (blocks as Record<string, unknown>)[label]) as Body[] | undefined;
  if (!Array.isArray(list) || list.length !== 1) throw new Error(`expected one block${label ? ` "${label}"` : ''}`);
  return list[0];
};

async function hcl(file: string): Promise<Body> {
  return (await parse(file, fs.readFileSync(path.join(DEPLOY_DIR, 'nomad', file), 'utf8'))) as Body;
}

interface PluginTask {
  type: string;
  task: Body;
  config: Body;
  plugin: Body;
}

/** The job's only task (and its csi_plugin and driver config). */
async function pluginTask(file: string, jobName: string): Promise<PluginTask> {
  const job = one((await hcl(file)).job, jobName);
  const groups = job.group as Record<string, Body[]>;
  const group = one(groups, Object.keys(groups)[0]);
  const tasks = group.task as Record<string, Body[]>;
  const task = one(tasks, Object.keys(tasks)[0]);
  return { type: job.type as string, task, config: one(task.config), plugin: one(task.csi_plugin) };
}

/** Values Nomad interpolates into task config (node attributes), for parsing the args as weftd would. */
const NODE_VALUES: Record<string, string> = { 'attr.unique.network.ip-address': '10.0.0.21', 'node.unique.name': 'client-1' };

function interpolated(args: string[]): string[] {
  return args.map((arg) =>
    arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (!(name in NODE_VALUES)) throw new Error(`\${${name}} is not a node value the test knows`);
      return NODE_VALUES[name];
    }),
  );
}

function checkPlugin({ task, config, plugin }: PluginTask, role: string): string[] {
  expect(task.driver).toBe('docker');
  expect(config.image).toBe(dockerfileFacts().tag);
  const args = interpolated(config.args as string[]);
  expect(parseWeftdArgs(args).csi?.role).toBe(role);
  // Nomad bind-mounts the plugin's socket dir at mount_dir and talks to csi.sock in it.
  expect(plugin).toMatchObject({ id: NOMAD_PLUGIN_ID, type: role });
  expect(socketPath(flagValue(args, '--csi-endpoint'))).toBe(`${plugin.mount_dir as string}/csi.sock`);
  return args;
}

describe('the node plugin job', () => {
  it('runs weftd on every client as the weft node plugin, privileged, on the host network', async () => {
    const job = await pluginTask('weft-node.nomad.hcl', 'weft-node');
    expect(job.type).toBe('system');
    const args = checkPlugin(job, 'node');
    expect(job.config).toMatchObject({ privileged: true, network_mode: 'host' });
    expect(parseWeftdArgs(args).listen).toBe(NODE_VALUES['attr.unique.network.ip-address']);
    expect(one(job.config.mount)).toMatchObject({ type: 'bind', source: '/var/lib/weft', target: parseWeftdArgs(args).dataDir });
  });

  it('publishes where weftd finds the allocation id in the target path', async () => {
    const { plugin } = await pluginTask('weft-node.nomad.hcl', 'weft-node');
    const alloc = '0b0e5c7a-3d2f-4e1a-9c8b-7a6f5e4d3c2b';
    expect(allocationIdFromTargetPath(`${plugin.stage_publish_base_dir as string}/per-alloc/${alloc}/data/rw-file-system-single-node-writer`)).toBe(alloc);
  });
});

describe('the controller plugin job', () => {
  it('runs weftd as the weft controller plugin, as a service', async () => {
    const job = await pluginTask('weft-controller.nomad.hcl', 'weft-controller');
    expect(job.type).toBe('service');
    checkPlugin(job, 'controller');
  });
});

describe('the volume specifications', () => {
  it('volume.hcl makes a weft CSI volume with capabilities Nomad knows and parameters CreateVolume accepts', async () => {
    const volume = await hcl('volume.hcl');
    expect(volume).toMatchObject({ type: 'csi', plugin_id: NOMAD_PLUGIN_ID });
    for (const capability of volume.capability as Body[]) {
      expect(ACCESS_MODES).toContain(capability.access_mode);
      expect(ATTACHMENT_MODES).toContain(capability.attachment_mode);
    }
    expect(FS_TYPES).toContain(one(volume.mount_options).fs_type);
    expect(() => parseParameters(one(volume.parameters) as Record<string, string>)).not.toThrow();
  });

  it('volume-from-snapshot.hcl restores a snapshot of that volume, by its CSI snapshot id', async () => {
    const [volume, restored] = [await hcl('volume.hcl'), await hcl('volume-from-snapshot.hcl')];
    expect(restored).toMatchObject({ type: 'csi', plugin_id: NOMAD_PLUGIN_ID });
    expect(parseSnapshotId(restored.snapshot_id as string)?.volume).toBe(volume.id);
  });
});

describe('the example job', () => {
  it('claims volume.hcl\'s volume with one of its capabilities and mounts it in the task', async () => {
    const volume = await hcl('volume.hcl');
    const job = one((await hcl('example.nomad.hcl')).job, 'weft-demo');
    const group = one(job.group, 'app');
    const claim = one(group.volume, 'data');
    expect(claim).toMatchObject({ type: 'csi', source: volume.id });
    // Nomad requires the claim's modes to match one capability block exactly.
    expect(volume.capability).toContainEqual({ access_mode: claim.access_mode, attachment_mode: claim.attachment_mode });
    const mount = one(one(group.task, 'app').volume_mount);
    expect(mount.volume).toBe('data');
  });
});
