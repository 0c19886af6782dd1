// deploy/nomad, parsed with HashiCorp's HCL parser (@cdktf/hcl2json): the plugin jobs run the image the
// Dockerfile builds with flags weftd accepts, on the socket Nomad expects, with --store from the etcd
// job's service; the etcd job's members form a cluster when real etcd runs their arguments; the volume
// files and the example job agree with each other and with what the driver accepts; the Prometheus
// job and the static scrape config pass promtool.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from '@cdktf/hcl2json';
import YAML from 'yaml';
import { parseSnapshotId } from '../../adapters/csi/names';
import { parseParameters } from '../../adapters/csi/parameters';
import { FS_TYPES } from '../../adapters/csi/validate';
import { allocationIdFromTargetPath } from '../../adapters/nomad/alloc-id';
import { NOMAD_PLUGIN_ID } from '../../adapters/nomad/registration';
import { ACCESS_MODES, ATTACHMENT_MODES } from '../../adapters/nomad/types';
import { DEPLOY_DIR, dockerfileFacts } from '../deploy/dockerfile';
import { flagValue, parseWeftdArgs, socketPath } from '../deploy/weftd-args';
import { ETCD_BIN } from '../helpers/etcd';
import { freePort } from '../helpers/free-port';
import { promtoolCheckConfig, type PrometheusConfig } from '../helpers/promtool';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run, track } from '../helpers/weftd';

afterAll(cleanupAll);

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

const IP_ADDRESS = 'attr.unique.network.ip-address';
/** Time for weftd's stop (Nomad's default of 5 s SIGKILLs it midway): the most a client allows by default (max_kill_timeout). */
const GRACEFUL_STOP = '30s';
/** The example addresses of the clients that run etcd.nomad.hcl's members. */
const ETCD_HOSTS = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
/** Values Nomad interpolates into task config (node attributes, template env), for parsing the args as weftd would. */
const NODE_VALUES: Record<string, string> = {
  [IP_ADDRESS]: '10.0.0.21',
  'node.unique.name': 'client-1',
  // What the plugin jobs' template renders from the weft-etcd service once the etcd job runs.
  WEFT_STORE: `etcd://${ETCD_HOSTS.map((host) => `${host}:2379`).join(',')}`,
};

function interpolated(args: string[], values = NODE_VALUES): string[] {
  return args.map((arg) =>
    arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (!(name in values)) throw new Error(`\${${name}} is not a node value the test knows`);
      return values[name];
    }),
  );
}

/** The service etcd.nomad.hcl registers its members' client URLs as. */
const ETCD_SERVICE = 'weft-etcd';

function checkPlugin({ task, config, plugin }: PluginTask, role: string): string[] {
  expect(task.driver).toBe('docker');
  expect(config.image).toBe(dockerfileFacts().tag);
  // --store is etcd://ADDRESS:PORT,... of every registration of the etcd job's service, as env for the args.
  expect(one(task.template)).toMatchObject({
    data: `WEFT_STORE=etcd://{{ range $i, $member := nomadService "${ETCD_SERVICE}" }}{{ if $i }},{{ end }}{{ $member.Address }}:{{ $member.Port }}{{ end }}\n`,
    env: true,
  });
  expect(flagValue(config.args as string[], '--store')).toBe('${WEFT_STORE}');
  const args = interpolated(config.args as string[]);
  expect(parseWeftdArgs(args).store).toEqual(parseWeftdArgs(['--store', NODE_VALUES.WEFT_STORE]).store);
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
    expect(job.task.kill_timeout).toBe(GRACEFUL_STOP);
    const args = checkPlugin(job, 'node');
    expect(job.config).toMatchObject({ privileged: true, network_mode: 'host' });
    expect(parseWeftdArgs(args).listen).toBe(NODE_VALUES['attr.unique.network.ip-address']);
    // The client's own agent tells the job of each allocation (weft_volume_info's job label).
    expect(parseWeftdArgs(args).csi?.nomadAddr).toBe(`http://${NODE_VALUES['attr.unique.network.ip-address']}:4646`);
    expect(job.task.identity).toEqual([{ env: true }]);
    const mounts = job.config.mount as Body[];
    expect(mounts).toContainEqual(expect.objectContaining({ type: 'bind', source: '/var/lib/weft', target: parseWeftdArgs(args).dataDir }));
    // Nomad mounts the host's /dev into every CSI plugin task (its plugin supervisor hook): a mount
    // of our own at /dev would make Docker refuse the container (duplicate mount point).
    expect(mounts.map((mount) => mount.target)).not.toContain('/dev');
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
    expect(job.task.kill_timeout).toBe(GRACEFUL_STOP);
    checkPlugin(job, 'controller');
  });
});

/** etcd.nomad.hcl's one group, and its task's args as Nomad gives them to the member on the client at `host`. */
async function etcdMember(host: string): Promise<{ group: Body; task: Body; args: string[] }> {
  const job = one((await hcl('etcd.nomad.hcl')).job, 'weft-etcd');
  const group = one(job.group, 'etcd');
  const task = one(group.task, 'etcd');
  return { group, task, args: interpolated(one(task.config).args as string[], { [IP_ADDRESS]: host }) };
}

/** "NAME=URL,..." -> [[NAME, URL], ...]. */
const initialCluster = (args: string[]) => (flagValue(args, '--initial-cluster') ?? '').split(',').map((member) => member.split('='));

describe('the etcd job', () => {
  it('runs three members on distinct clients, each named after its client\'s address, which --initial-cluster lists with its peer URL', async () => {
    const { group, task } = await etcdMember(ETCD_HOSTS[0]);
    expect(group.count).toBe(ETCD_HOSTS.length);
    expect(group.constraint).toContainEqual({ operator: 'distinct_hosts', value: 'true' });
    expect(one(task.config)).toMatchObject({ image: expect.stringMatching(/^gcr\.io\/etcd-development\/etcd:v3\.5\.\d+$/), network_mode: 'host' });
    for (const host of ETCD_HOSTS) {
      const { args } = await etcdMember(host);
      expect(initialCluster(args)).toContainEqual([flagValue(args, '--name'), flagValue(args, '--initial-advertise-peer-urls')]);
    }
    expect(initialCluster((await etcdMember(ETCD_HOSTS[0])).args).map(([name]) => name)).toEqual(ETCD_HOSTS);
  });

  it('compacts its history and sets its quota (else etcd refuses every write once full); real etcd takes the flags below', async () => {
    const { args } = await etcdMember(ETCD_HOSTS[0]);
    expect(flagValue(args, '--auto-compaction-mode')).toBe('periodic');
    expect(flagValue(args, '--auto-compaction-retention')).toMatch(/^\d+[hm]$/);
    expect(Number(flagValue(args, '--quota-backend-bytes'))).toBeGreaterThan(0);
  });

  it('keeps each member\'s data in a host volume and registers its client URL as the service the plugin jobs read', async () => {
    const { group, task, args } = await etcdMember(ETCD_HOSTS[0]);
    const volume = one(group.volume, 'data');
    expect(volume).toMatchObject({ type: 'host', source: 'weft-etcd' });
    expect(one(task.volume_mount)).toMatchObject({ volume: 'data', destination: flagValue(args, '--data-dir') });
    const service = one(group.service);
    expect(service).toMatchObject({ name: ETCD_SERVICE, provider: 'nomad', port: 'client' });
    const clientPort = one(one(group.network).port, 'client').static;
    expect(flagValue(args, '--advertise-client-urls')).toBe(`http://${ETCD_HOSTS[0]}:${clientPort}`);
    expect(NODE_VALUES.WEFT_STORE.split(',')[0]).toBe(`etcd://${ETCD_HOSTS[0]}:${clientPort}`);
  });

  it('forms one 3-member cluster when real etcd runs the members\' args (their addresses moved to free loopback ports)', async () => {
    const dir = makeTempDir('weft-etcd-job-');
    // HOST:2379 and HOST:2380 of every member -> 127.0.0.1:FREE_PORT, wherever they appear.
    const moved = new Map<string, string>();
    for (const host of ETCD_HOSTS) for (const port of [2379, 2380]) moved.set(`${host}:${port}`, `127.0.0.1:${await freePort()}`);
    const onLoopback = (arg: string) => arg.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, (address) => moved.get(address) ?? address);
    const logs: string[] = [];
    for (const [index, host] of ETCD_HOSTS.entries()) {
      const args = (await etcdMember(host)).args.map(onLoopback);
      args[args.indexOf('--data-dir') + 1] = path.join(dir, host);
      const child = track(spawn(ETCD_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
      child.stderr?.on('data', (chunk: Buffer) => (logs[index] = (logs[index] ?? '') + chunk.toString()));
    }
    const endpoints = ETCD_HOSTS.map((host) => moved.get(`${host}:2379`)).join(',');
    const health = () => run('etcdctl', ['--endpoints', endpoints, 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' } });
    await waitFor(async () => (await health()).code === 0, 30_000, 200).catch(() => {
      throw new Error(`the etcd members did not become healthy:\n${logs.join('\n')}`);
    });
    const list = await run('etcdctl', ['--endpoints', endpoints, 'member', 'list', '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const members = (JSON.parse(list.stdout) as { members: { name: string }[] }).members;
    expect(members.map((member) => member.name).sort()).toEqual(ETCD_HOSTS);
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

/**
 * A Prometheus config loads Weft's rule files, copied to /etc/prometheus/weft: each one it names is
 * in exporters/prometheus/rules and is a rule file, not one of promtool's unit tests beside them
 * (which Prometheus refuses as rules: it would not start).
 */
function expectShippedRules(ruleFiles: string[]): void {
  const shipped = path.join(DEPLOY_DIR, '..', 'exporters', 'prometheus', 'rules');
  expect(ruleFiles.map((file) => path.dirname(file))).toEqual(ruleFiles.map(() => '/etc/prometheus/weft'));
  expect(ruleFiles.map((file) => path.basename(file)).sort()).toEqual(fs.readdirSync(shipped).filter((file) => file.endsWith('.yml') && !file.endsWith('.test.yml')).sort());
}

/**
 * What every shipped Prometheus config does for WeftdDown and the workload labels: a weftd whose
 * Consul check fails stays a target (so up == 0, not no target at all), the labels weftd puts on
 * weft_volume_info (a workload's namespace, pod, job) are kept rather than renamed exported_*, and
 * alerts go to an Alertmanager.
 */
function expectAlertingScrape(config: PrometheusConfig): void {
  const [scrape] = config.scrape_configs;
  expect(scrape.honor_labels).toBe(true);
  expect(JSON.stringify(scrape.relabel_configs ?? [])).not.toContain('__meta_consul_health');
  expect((config.alerting as { alertmanagers: unknown[] } | undefined)?.alertmanagers).toHaveLength(1);
}

describe('the Prometheus job', () => {
  it('scrapes the weft-metrics service through Consul, as deploy/prometheus/consul-sd.yml does, with a config promtool accepts', async () => {
    const job = one((await hcl('prometheus.nomad.hcl')).job, 'weft-prometheus');
    const group = one(job.group, 'prometheus');
    const task = one(group.task, 'prometheus');
    const template = one(task.template);
    expect(one(task.config).args).toContain('--config.file=/local/prometheus.yml');
    expect(template.destination).toBe('local/prometheus.yml');
    // Nomad fills in the client's address: the template is YAML once it has.
    const config = YAML.parse((template.data as string).replaceAll('{{ env "attr.unique.network.ip-address" }}', '10.0.0.1')) as PrometheusConfig;
    const shipped = YAML.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'prometheus', 'consul-sd.yml'), 'utf8')) as PrometheusConfig;
    const [scrape] = config.scrape_configs;
    expect(scrape.consul_sd_configs).toEqual([{ server: '10.0.0.1:8500', services: ['weft-metrics'] }]);
    expect(scrape.relabel_configs).toEqual((shipped.scrape_configs[0].relabel_configs as unknown[]).filter((r) => (r as { target_label?: string }).target_label !== 'consul_dc'));
    // The rules it loads are in the host volume it mounts where rule_files looks.
    expectShippedRules(config.rule_files as string[]);
    expectAlertingScrape(config);
    expectAlertingScrape(shipped);
    expect((config.alerting as { alertmanagers: { consul_sd_configs: unknown }[] }).alertmanagers[0].consul_sd_configs).toEqual([{ server: '10.0.0.1:8500', services: ['alertmanager'] }]);
    expect(one(task.volume_mount)).toMatchObject({ volume: 'rules', destination: '/etc/prometheus/weft' });
    expect(await promtoolCheckConfig(config)).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
  });

  it('deploy/prometheus/static.yml, for hosts without Consul, passes promtool and names each node', async () => {
    const config = YAML.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'prometheus', 'static.yml'), 'utf8')) as PrometheusConfig;
    expect(await promtoolCheckConfig(config)).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
    expectShippedRules(config.rule_files as string[]);
    expectShippedRules((YAML.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'prometheus', 'consul-sd.yml'), 'utf8')) as PrometheusConfig).rule_files as string[]);
    const [scrape] = config.scrape_configs;
    expect(scrape.job_name).toMatch(/^weft/); // what WeftdDown's up{job=~"weft.*"} matches
    expectAlertingScrape(config);
    for (const group of scrape.static_configs as { labels: { node: string } }[]) expect(group.labels.node).toMatch(/^n\d$/);
  });

  it('deploy/prometheus/alertmanager.yml, where the shipped configs send alerts, passes amtool check-config', async () => {
    const file = path.join(DEPLOY_DIR, 'prometheus', 'alertmanager.yml');
    const result = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile('amtool', ['check-config', file], (error, stdout, stderr) => resolve({ code: error ? 1 : 0, out: stdout + stderr })),
    );
    expect(result).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
    // Pages grouped per volume: one notification per alert, volume and operation (the latency
    // alerts are per read or write), not one per series.
    expect((YAML.parse(fs.readFileSync(file, 'utf8')) as { route: { group_by: string[] } }).route.group_by).toEqual(['alertname', 'volume', 'operation']);
  });
});
