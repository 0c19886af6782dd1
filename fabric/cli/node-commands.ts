// `weft node info`: what the node answering is (id, version, addresses, ports, data dir,
// on-disk format) and how long it has been up. `weft node list`: every node of the cluster.
// `weft node forget NODE`: a node that will not come back, taken out of the cluster.

import type { Command } from 'commander';
import type { NodeStatus } from '../api/node-info';
import type { ClusterNode } from '../cluster/membership';
import { formatSize } from '../units';
import { nameArg } from './args';
import { action, type CommandContext, type Outcome } from './context';
import { details, formatDuration, formatTime, table, type Column } from './output';

export function nodeCommands(program: Command): void {
  const node = program.command('node').description('inspect the nodes of the cluster');
  node.command('info').description("show the node's id, version, ports, data dir and uptime").action(action(nodeInfo));
  node.command('list').description("list the cluster's nodes: state, zone, address, pools and capacity").action(action(listNodes));
  node
    .command('forget')
    .argument('<node>', 'the id of a node that is down for good')
    .description('take a node that will not come back out of the cluster (refused while it is up or holds a copy of a volume)')
    .action(action(forgetNode));
}

async function forgetNode(context: CommandContext, [node]: [string]): Promise<Outcome> {
  await context.client.forgetNode(nameArg('node', node));
  return { json: { node, forgotten: true }, text: `forgot node "${node}"` };
}

async function listNodes(context: CommandContext): Promise<Outcome> {
  const nodes = await context.client.listNodes();
  return { json: nodes, text: nodes.length ? table(NODE_COLUMNS, nodes) : 'no nodes' };
}

const sum = (n: ClusterNode, pick: (p: ClusterNode['pools'][number]) => number) => n.pools.reduce((total, p) => total + pick(p), 0);

const NODE_COLUMNS: Column<ClusterNode>[] = [
  { header: 'NODE', value: (n) => n.id },
  { header: 'STATE', value: (n) => n.state },
  { header: 'ZONE', value: (n) => n.zone || '-' },
  { header: 'ADDRESS', value: (n) => n.address },
  { header: 'POOLS', value: (n) => n.pools.map((p) => p.class).join(',') || '-' },
  { header: 'CAPACITY', value: (n) => formatSize(sum(n, (p) => p.capacityBytes)), alignRight: true },
  { header: 'USED', value: (n) => formatSize(sum(n, (p) => p.usedBytes)), alignRight: true },
  { header: 'PROVISIONED', value: (n) => formatSize(sum(n, (p) => p.provisionedBytes)), alignRight: true },
  { header: 'VOLUMES', value: (n) => String(n.volumes), alignRight: true },
  { header: 'SEEN', value: (n) => formatTime(n.updatedAt) },
];

async function nodeInfo(context: CommandContext): Promise<Outcome> {
  const node = await context.client.getNodeInfo();
  return { json: node, text: nodeDetails(node) };
}

export function nodeDetails(node: NodeStatus): string {
  return details([
    ['Node ID', node.nodeId],
    ['Version', node.version],
    ['Listen address', node.listenAddress],
    ['NBD port', String(node.nbdPort)],
    ['API port', String(node.apiPort)],
    ['Metrics port', node.metricsPort === 0 ? 'off' : String(node.metricsPort)],
    ['Data dir', node.dataDir],
    ['Format version', String(node.formatVersion)],
    ['Started', formatTime(node.startedAt)],
    ['Uptime', formatDuration(node.uptimeSeconds)],
  ]);
}
