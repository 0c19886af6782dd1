// NodeService: what this node is (id, version, addresses and ports, data dir, on-disk format)
// and how long it has been up, and the nodes of the cluster.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ClusterNode } from '../cluster/membership';
import { nodeStatus, type NodeInfo } from './node-info';
import { unary, type RpcContext } from './rpc';
import { checkName } from './validate';

/** What the API asks of the cluster. */
export interface ClusterView {
  listNodes(): Promise<ClusterNode[]>;
  /** Takes a node that is down for good out of the cluster (forget-node.ts). */
  forgetNode(node: string): Promise<void>;
}

/** apiPort() is read per call: the server learns its port only once it is bound. */
export function nodeService(node: NodeInfo, cluster: ClusterView, apiPort: () => number, rpc: RpcContext): UntypedServiceImplementation {
  return {
    GetNodeInfo: unary(rpc, () => nodeStatus(node, apiPort())),
    ListNodes: unary(rpc, async () => ({ nodes: (await cluster.listNodes()).map((n) => ({ ...n, pools: n.pools.map((p) => ({ ...p, members: [] })) })) })),
    ForgetNode: unary(rpc, async (request: { nodeId: string }) => {
      await cluster.forgetNode(checkName('node_id', request.nodeId));
      return {};
    }),
  };
}
