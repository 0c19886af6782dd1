// What the daemon tells the API about its node, and what NodeService.GetNodeInfo answers with:
// that, plus the API's own port and the node's uptime.

export interface NodeInfo {
  nodeId: string;
  /** weftd's version. */
  version: string;
  /** Address the node's services are reached at. */
  listenAddress: string;
  nbdPort: number;
  metricsPort: number;
  dataDir: string;
  /** Version of the on-disk format of the node's pools. */
  formatVersion: number;
  startedAt: Date;
}

export interface NodeStatus extends Omit<NodeInfo, 'startedAt'> {
  /** The port the API answering is bound to. */
  apiPort: number;
  /** ISO 8601. */
  startedAt: string;
  uptimeSeconds: number;
}

export function nodeStatus(node: NodeInfo, apiPort: number, now: Date = new Date()): NodeStatus {
  return {
    ...node,
    apiPort,
    startedAt: node.startedAt.toISOString(),
    uptimeSeconds: Math.max(0, Math.floor((now.getTime() - node.startedAt.getTime()) / 1000)),
  };
}
