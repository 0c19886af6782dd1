// SnapshotService: validates each request, then makes one call: to the engine through the cluster,
// which takes a replicated volume's snapshots on every copy. A snapshot is
// named by its volume and its own name; NBD exports it as VOLUME@SNAPSHOT.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ReplicatedVolumes } from './cluster-volumes';
import type * as wire from './messages';
import { unary, type RpcContext } from './rpc';
import { checkName, checkOptionalName } from './validate';

export function snapshotService(cluster: ReplicatedVolumes, rpc: RpcContext): UntypedServiceImplementation {
  return {
    CreateSnapshot: unary(rpc, (request: wire.SnapshotRequest) =>
      cluster.createSnapshot(checkName('volume', request.volume), checkName('name', request.name)),
    ),
    ListSnapshots: unary(rpc, async (request: wire.ListSnapshotsRequest) => ({
      snapshots: await cluster.listSnapshots(checkOptionalName('volume', request.volume)),
    })),
    DeleteSnapshot: unary(rpc, async (request: wire.SnapshotRequest) => {
      await cluster.deleteSnapshot(checkName('volume', request.volume), checkName('name', request.name));
      return {};
    }),
  };
}
