// Loads csi.proto (shipped in the source tree, beside this file's source) into the gRPC service
// definitions of CSI v1 that the driver serves and that tests call.

import * as path from 'path';
import type * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { findAbove, loadProto } from '../../fabric/source-files';

const PROTO_RELATIVE_PATH = path.join('adapters', 'csi', 'proto', 'csi.proto');

export type CsiServiceName = 'Identity' | 'Controller' | 'Node';

/** csi.proto's absolute path, from adapters/csi or dist/adapters/csi. */
export function csiProtoPath(startDir: string = __dirname): string {
  return findAbove(PROTO_RELATIVE_PATH, startDir);
}

let cached: protoLoader.PackageDefinition | undefined;

/** Field names as the spec spells them (snake_case). */
function packageDefinition(): protoLoader.PackageDefinition {
  cached ??= loadProto(csiProtoPath(), 'as-written');
  return cached;
}

export function csiServiceDefinition(name: CsiServiceName): ServiceDefinition {
  return packageDefinition()[`csi.v1.${name}`] as ServiceDefinition;
}
