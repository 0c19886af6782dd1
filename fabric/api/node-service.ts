// NodeService: what this node is (id, version, addresses and ports, data dir, on-disk format)
// and how long it has been up, and the nodes of the cluster.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ClusterNode } from '../cluster/membership';
import { nodeStatus, type NodeInfo } from './node-info';
import { unary, type RpcContext } from './rpc';

/** What the API asks of the cluster. */
export interface ClusterView {
  listNodes(): Promise<ClusterNode[]>;
}

/** apiPort() is read per call: the server learns its port only once it is bound. */
export function nodeService(node: NodeInfo, cluster: ClusterView, apiPort: () => number, rpc: RpcContext): UntypedServiceImplementation {
  return {
    GetNodeInfo: unary(rpc, () => nodeStatus(node, apiPort())),
    ListNodes: unary(rpc, async () => ({ nodes: (await cluster.listNodes()).map((n) => ({ ...n, pools: n.pools.map((p) => ({ ...p, members: [] })) })) })),
  };
}
