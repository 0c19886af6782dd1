// SnapshotService: validates each request, then makes one call to the engine (through the cluster
// for a replicated volume, whose snapshots are taken on every copy). A snapshot is
// named by its volume and its own name; NBD exports it as VOLUME@SNAPSHOT.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VolumeEngine } from '../volume/types';
import type { ReplicatedVolumes } from './cluster-volumes';
import type * as wire from './messages';
import { unary } from './rpc';
import { checkName, checkOptionalName } from './validate';

export function snapshotService(engine: VolumeEngine, cluster: ReplicatedVolumes, logger: Logger): UntypedServiceImplementation {
  return {
    CreateSnapshot: unary(logger, (request: wire.SnapshotRequest) =>
      cluster.createSnapshot(checkName('volume', request.volume), checkName('name', request.name)),
    ),
    ListSnapshots: unary(logger, (request: wire.ListSnapshotsRequest) => ({
      snapshots: engine.listSnapshots(checkOptionalName('volume', request.volume)),
    })),
    DeleteSnapshot: unary(logger, async (request: wire.SnapshotRequest) => {
      await cluster.deleteSnapshot(checkName('volume', request.volume), checkName('name', request.name));
      return {};
    }),
  };
}
