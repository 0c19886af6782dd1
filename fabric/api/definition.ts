// Loads weft.proto (shipped in the source tree, beside this file's source) into gRPC service
// definitions that the server and the client share.

import * as fs from 'fs';
import * as path from 'path';
import * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';

const PROTO_RELATIVE_PATH = path.join('fabric', 'api', 'proto', 'weft', 'v1', 'weft.proto');

export type ServiceName = 'VolumeService' | 'SnapshotService' | 'PoolService' | 'NodeService' | 'AttachmentService';

/**
 * The absolute path of a file shipped in the source tree (a proto, package.json), given relative
 * to the repository root. Code runs from its source directory (ts-node, tests) or from dist/
 * (compiled), so walk up from startDir to the first directory that holds the file at its place.
 */
export function findAbove(relativePath: string, startDir: string): string {
  for (let dir = startDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, relativePath);
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${relativePath} not found above ${startDir}`);
  }
}

/** weft.proto's absolute path. */
export function protoPath(startDir: string = __dirname): string {
  return findAbove(PROTO_RELATIVE_PATH, startDir);
}

let cached: protoLoader.PackageDefinition | undefined;

/** camelCase fields, uint64 as number, absent fields as their defaults, oneofs named. */
function packageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(protoPath(), {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cached;
}

export function serviceDefinition(name: ServiceName): ServiceDefinition {
  return packageDefinition()[`weft.v1.${name}`] as ServiceDefinition;
}
