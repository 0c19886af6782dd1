// `weft node info`: what the node answering is (id, version, addresses, ports, data dir,
// on-disk format) and how long it has been up.

import type { Command } from 'commander';
import type { NodeStatus } from '../api/node-info';
import { action, type CommandContext, type Outcome } from './context';
import { details, formatDuration, formatTime } from './output';

export function nodeCommands(program: Command): void {
  const node = program.command('node').description('inspect the node that weft talks to');
  node.command('info').description("show the node's id, version, ports, data dir and uptime").action(action(nodeInfo));
}

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
    ['Metrics port', String(node.metricsPort)],
    ['Data dir', node.dataDir],
    ['Format version', String(node.formatVersion)],
    ['Started', formatTime(node.startedAt)],
    ['Uptime', formatDuration(node.uptimeSeconds)],
  ]);
}
