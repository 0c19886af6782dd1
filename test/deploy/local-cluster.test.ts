// deploy/local/cluster.sh, as a new user runs it: `up` starts etcd and three weftd that list each other
// as up, `status` shows them, `down` stops exactly them and removes the state dir; a start that fails
// halfway leaves nothing running. Real etcd and weftd, on free ports and a temp state dir.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { freePort } from '../helpers/free-port';
import { cleanupAll, makeTempDir, REPO_ROOT, run, WEFT_JS } from '../helpers/weftd';

const SCRIPT = path.join(REPO_ROOT, 'deploy', 'local', 'cluster.sh');
const NODES = [
  { id: 'n1', zone: 'z1', address: '127.0.0.11' },
  { id: 'n2', zone: 'z2', address: '127.0.0.12' },
  { id: 'n3', zone: 'z3', address: '127.0.0.13' },
];
const PROCESSES = ['etcd', ...NODES.map((node) => node.id)];

let stateDir: string;
let env: NodeJS.ProcessEnv;
let apiPort: number;
let nbdPort: number;

const cluster = (command: string) => run(SCRIPT, [command], { env, timeoutMs: 90_000 });

async function nodeList(address = '127.0.0.11') {
  const result = await run(WEFT_JS, ['--endpoint', `${address}:${apiPort}`, '--output', 'json', 'node', 'list']);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout) as { id: string; state: string; zone?: string; address: string; nbdPort: number }[];
}

/** The pids the script recorded in the state dir. */
const recordedPids = () => PROCESSES.map((name) => Number(fs.readFileSync(path.join(stateDir, `${name}.pid`), 'utf8')));

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  stateDir = path.join(makeTempDir('weft-local-cluster-'), 'state');
  const ports = new Set<number>();
  while (ports.size < 5) ports.add(await freePort());
  let etcdPort: number, etcdPeerPort: number, metricsPort: number;
  [etcdPort, etcdPeerPort, nbdPort, apiPort, metricsPort] = [...ports];
  env = {
    ...process.env,
    WEFT_CLUSTER_DIR: stateDir,
    WEFT_CLUSTER_POOL_SIZE: '64MiB',
    WEFT_CLUSTER_ETCD_PORT: String(etcdPort),
    WEFT_CLUSTER_ETCD_PEER_PORT: String(etcdPeerPort),
    WEFT_CLUSTER_NBD_PORT: String(nbdPort),
    WEFT_CLUSTER_API_PORT: String(apiPort),
    WEFT_CLUSTER_METRICS_PORT: String(metricsPort),
  };
});

afterAll(async () => {
  await cluster('down');
  await cleanupAll();
});

describe('deploy/local/cluster.sh', () => {
  it('stops what it started when a node cannot start, and says which', async () => {
    // n2's API port is taken on its address, so n2 exits at startup.
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(apiPort, '127.0.0.12', resolve));
    try {
      const result = await cluster('up');
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/n2 exited; its log: .*n2\.log/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    expect(recordedPids().filter(isRunning)).toEqual([]);
  });

  describe('up', () => {
    let other: EtcdCluster;
    let pids: number[];
    beforeAll(async () => {
      // Another etcd on the machine, which `down` must leave running.
      other = await startEtcd();
    });

    it('starts three nodes, each listed up in its zone at its own address, and says how to reach them', async () => {
      const result = await cluster('up');
      expect(result.stderr).toMatch(/removing the state of a cluster that no longer runs/);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`WEFT_ENDPOINT=127.0.0.11:${apiPort}`);
      expect(result.stdout).toContain(`nbd://127.0.0.11:${nbdPort}/`);
      for (const address of NODES.map((node) => node.address)) {
        const listed = (await nodeList(address)).map(({ id, state, zone, address: at, nbdPort: port }) => ({ id, state, zone, address: at, port }));
        expect(listed.sort((a, b) => a.id.localeCompare(b.id))).toEqual(NODES.map((node) => ({ ...node, state: 'up', port: nbdPort })));
      }
      pids = recordedPids();
    });

    it('refuses a second up and leaves the running cluster alone', async () => {
      const result = await cluster('up');
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/already up/);
      expect(recordedPids()).toEqual(pids);
      expect((await nodeList()).filter((node) => node.state === 'up')).toHaveLength(3);
    });

    it('status shows each process running', async () => {
      const result = await cluster('status');
      expect(result.code).toBe(0);
      for (const [index, name] of PROCESSES.entries()) expect(result.stdout).toContain(`${name}  running  pid ${pids[index]}`);
    });

    it('down stops exactly its processes and removes the state dir', async () => {
      const result = await cluster('down');
      expect(result.code).toBe(0);
      expect(pids.filter(isRunning)).toEqual([]);
      expect(fs.existsSync(stateDir)).toBe(false);
      await other.healthy();
      const status = await cluster('status');
      expect(status.code).not.toBe(0);
      expect(status.stdout).not.toMatch(/running/);
    });
  });
});
