// What the daemon tells the API about its node, and what NodeService.GetNodeInfo answers with:
// that, plus the API's own port and the node's uptime.

import { hostPort } from '../listen';

export interface NodeInfo {
  nodeId: string;
  /** weftd's version. */
  version: string;
  /** Address the node's services are reached at. */
  listenAddress: string;
  nbdPort: number;
  /** 0: metrics are off (weftd --metrics-port off). */
  metricsPort: number;
  dataDir: string;
  /** Version of the on-disk format of the node's pools. */
  formatVersion: number;
  startedAt: Date;
  /** Zone label (weftd --zone), for topology; absent when the node has none. */
  zone?: string;
}

export interface NodeStatus extends Omit<NodeInfo, 'startedAt'> {
  /** The port the API answering is bound to. */
  apiPort: number;
  /** ISO 8601. */
  startedAt: string;
  uptimeSeconds: number;
}

/** "HOST:PORT" to connect to a server listening on host: a wildcard means this host's loopback. */
export function reachableAddress(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return hostPort(reachable, port);
}

export function nodeStatus(node: NodeInfo, apiPort: number, now: Date = new Date()): NodeStatus {
  return {
    ...node,
    apiPort,
    startedAt: node.startedAt.toISOString(),
    uptimeSeconds: Math.max(0, Math.floor((now.getTime() - node.startedAt.getTime()) / 1000)),
  };
}
