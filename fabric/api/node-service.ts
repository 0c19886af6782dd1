// NodeService: what this node is (id, version, addresses and ports, data dir, on-disk format)
// and how long it has been up.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { nodeStatus, type NodeInfo } from './node-info';
import { unary } from './rpc';

/** apiPort() is read per call: the server learns its port only once it is bound. */
export function nodeService(node: NodeInfo, apiPort: () => number, logger: Logger): UntypedServiceImplementation {
  return { GetNodeInfo: unary(logger, () => nodeStatus(node, apiPort())) };
}
