// PoolService: a read-only view of this node's pools (service class, capacity, use, members) and of
// its service classes with their objectives. It takes no request fields, so there is nothing to validate.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ServiceClass } from '../class-objectives';
import type { PoolInfo, VolumeEngine } from '../volume/types';
import { unary, type RpcContext } from './rpc';

export function poolService(engine: VolumeEngine, classes: readonly ServiceClass[], rpc: RpcContext): UntypedServiceImplementation {
  return {
    ListPools: unary(rpc, () => ({ pools: engine.listPools() })),
    ListClasses: unary(rpc, () => ({ classes: classInfos(engine.listPools(), classes) })),
  };
}

/** What `weft class list` shows of a class. */
export interface ClassInfo extends ServiceClass {
  capacityBytes: number;
  usedBytes: number;
  provisionedBytes: number;
}

/** Every class that a pool has or the config declares, by name, with its pools' sums. */
export function classInfos(pools: readonly PoolInfo[], classes: readonly ServiceClass[]): ClassInfo[] {
  const names = [...new Set([...pools.map((p) => p.class), ...classes.map((c) => c.name)])].sort();
  return names.map((name) => {
    const of = pools.filter((p) => p.class === name);
    const sum = (bytes: (pool: PoolInfo) => number) => of.reduce((total, pool) => total + bytes(pool), 0);
    return {
      name,
      capacityBytes: sum((p) => p.capacityBytes),
      usedBytes: sum((p) => p.usedBytes),
      provisionedBytes: sum((p) => p.provisionedBytes),
      objectives: classes.find((c) => c.name === name)?.objectives ?? {},
    };
  });
}
