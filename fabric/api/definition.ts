// Loads weft.proto (shipped in the source tree, beside this file's source) into gRPC service
// definitions that the server and the client share.

import * as path from 'path';
import type * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { findAbove, loadProto } from '../source-files';
import { MAX_ABSENCE_MAP_BYTES } from '../replication/absence-log';

const PROTO_RELATIVE_PATH = path.join('fabric', 'api', 'proto', 'weft', 'v1', 'weft.proto');

export type ServiceName = 'VolumeService' | 'SnapshotService' | 'PoolService' | 'NodeService' | 'AttachmentService' | 'ReplicaService';

/** weft.proto's absolute path. */
export function protoPath(startDir: string = __dirname): string {
  return findAbove(PROTO_RELATIVE_PATH, startDir);
}

let cached: protoLoader.PackageDefinition | undefined;

/** camelCase field names. */
function packageDefinition(): protoLoader.PackageDefinition {
  cached ??= loadProto(protoPath(), 'camelCase');
  return cached;
}

/** An absence map larger than this is told as the need of a full copy (thin): more to copy, never less. */
export { MAX_ABSENCE_MAP_BYTES };

/**
 * The largest message a node takes (gRPC's default is 4 MiB): an absence map of writes spread over
 * a large volume is larger (4 KiB per 128 MiB with a block to copy), and one refused would drop the
 * copy it was told to (replicated-device.ts). Twice the largest map, for the rest of the message.
 */
export const MAX_MESSAGE_BYTES = 2 * MAX_ABSENCE_MAP_BYTES;

export function serviceDefinition(name: ServiceName): ServiceDefinition {
  return packageDefinition()[`weft.v1.${name}`] as ServiceDefinition;
}
