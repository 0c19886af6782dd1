// Loads weft.proto (shipped in the source tree, beside this file's source) into gRPC service
// definitions that the server and the client share.

import * as path from 'path';
import type * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { findAbove, loadProto } from '../source-files';

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

export function serviceDefinition(name: ServiceName): ServiceDefinition {
  return packageDefinition()[`weft.v1.${name}`] as ServiceDefinition;
}
