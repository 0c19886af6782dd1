// PoolService: a read-only view of this node's pools (service class, capacity, use, members).
// It takes no request fields, so there is nothing to validate.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VolumeEngine } from '../volume/types';
import { unary } from './rpc';

export function poolService(engine: VolumeEngine, logger: Logger): UntypedServiceImplementation {
  return { ListPools: unary(logger, () => ({ pools: engine.listPools() })) };
}
