// Files shipped beside the code (protos, package.json, native modules), found from either place the
// code runs: its source directory (tests, ts-node) or dist/ (compiled).

import * as fs from 'fs';
import * as path from 'path';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The absolute path of a file given relative to the repository root: walks up from startDir to the
 * first directory that holds the file at its place.
 */
export function findAbove(relativePath: string, startDir: string = __dirname): string {
  for (let dir = startDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, relativePath);
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${relativePath} not found above ${startDir}`);
  }
}

/** Loads a proto for @grpc/grpc-js: int64 as number, enums by name, absent fields as defaults, oneofs named. */
export function loadProto(protoFile: string, fieldNames: 'as-written' | 'camelCase'): protoLoader.PackageDefinition {
  return protoLoader.loadSync(protoFile, { keepCase: fieldNames === 'as-written', longs: Number, enums: String, defaults: true, oneofs: true });
}
