// weftd --zone-from-node-label: real weftd processes read their zone from their Kubernetes Node's label
// (FakeKubernetesApi, through KUBECONFIG) and the cluster shows it in `weft node list`; a node without
// the label starts without a zone; a node weftd cannot read fails startup, naming the label and node.

import fs from 'node:fs';
import path from 'node:path';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { FakeKubernetesApi } from '../helpers/fake-kubernetes-api';
import { freePort } from '../helpers/free-port';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

const LABEL = 'topology.kubernetes.io/zone';

let api: FakeKubernetesApi;
let etcd: EtcdCluster;
let kubeconfig: string;

beforeAll(async () => {
  const dir = makeTempDir('weft-kube-');
  api = await FakeKubernetesApi.start(dir);
  api.addNode('n1', { [LABEL]: 'eu-west-1a' });
  api.addNode('n2');
  api.addNode('n3', { [LABEL]: 'eu-west-1b' });
  api.forbid('n3');
  kubeconfig = api.kubeconfig(dir);
  etcd = await startEtcd(1);
});

afterAll(async () => {
  await cleanupAll();
  await api?.close();
});

/** A weftd in the etcd cluster, named nodeId, that takes its zone from LABEL through the given kubeconfig. */
function startNode(nodeId: string, options: { kubeconfigFile?: string; dataDir?: string } = {}): Promise<WeftdHandle> {
  return startWeftd({
    dataDir: options.dataDir,
    pools: ['none'],
    extraArgs: ['--node-id', nodeId, '--zone-from-node-label', LABEL, '--store', `etcd://${etcd.endpoints.join(',')}`],
    env: { KUBECONFIG: options.kubeconfigFile ?? kubeconfig },
  });
}

/** NODE -> ZONE, as the table of `weft node list` shows them. */
async function zonesListed(node: WeftdHandle): Promise<Record<string, string>> {
  const result = await node.weft(['node', 'list']);
  expect(result.stderr).toBe('');
  const [header, ...rows] = result.stdout.trim().split('\n').map((line) => line.trim().split(/\s+/));
  expect(header.slice(0, 3)).toEqual(['NODE', 'STATE', 'ZONE']);
  return Object.fromEntries(rows.map((row) => [row[0], row[2]]));
}

/** The startup error of a weftd that fails to start, and whether it left its data dir untouched. */
async function startupFailure(nodeId: string, kubeconfigFile?: string): Promise<string> {
  const dataDir = path.join(makeTempDir('weftd-'), 'data');
  const failure = await startNode(nodeId, { dataDir, kubeconfigFile }).then(
    () => 'started',
    (error: Error) => error.message,
  );
  expect(failure).toMatch(/^weftd exited with 1 before it was ready/);
  expect(fs.existsSync(dataDir)).toBe(false);
  return failure;
}

it('takes the zone from the node label, and starts without one (with a warning) where the label is missing', async () => {
  const n1 = await startNode('n1');
  const n2 = await startNode('n2');
  expect(await zonesListed(n1)).toEqual({ n1: 'eu-west-1a', n2: '-' });
  expect(n2.logs()).toMatch(new RegExp(`"level":"warn".*Kubernetes node n2 has no label ${LABEL}: starting without a zone`));
  expect(api.requests).toEqual(expect.arrayContaining(['/api/v1/nodes/n1', '/api/v1/nodes/n2']));
});

it('fails startup when the service account may not read the node', async () => {
  expect(await startupFailure('n3')).toMatch(
    new RegExp(`weftd: cannot read the label ${LABEL} of Kubernetes node n3: forbidden \\(403\\): nodes "n3" is forbidden: .*needs "get" on nodes`),
  );
});

it('fails startup when no node has the --node-id name', async () => {
  expect(await startupFailure('n9')).toMatch(
    new RegExp(`weftd: cannot read the label ${LABEL} of Kubernetes node n9: no such node \\(404\\): nodes "n9" not found; --node-id must be the node's name`),
  );
});

it('fails startup when the API server does not answer', async () => {
  const closedPort = await freePort();
  const unreachable = api.kubeconfig(makeTempDir('weft-kube-'), `https://127.0.0.1:${closedPort}`);
  expect(await startupFailure('n1', unreachable)).toMatch(new RegExp(`weftd: cannot read the label ${LABEL} of Kubernetes node n1: .*ECONNREFUSED`));
});
