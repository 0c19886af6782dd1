// Checks of CSI request fields, run before anything else: a missing or malformed field is an
// INVALID_ARGUMENT that names it. Also which volume capabilities Weft supports, and why not.

import * as path from 'path';
import { invalidArgument } from './errors';
import type { AccessModeName, VolumeCapability } from './messages';

/** Filesystems NodeStageVolume can make and mount; "" means the default, ext4. */
export const FS_TYPES = ['ext4', 'xfs'] as const;
export type FsType = (typeof FS_TYPES)[number];
export const DEFAULT_FS_TYPE: FsType = 'ext4';

/**
 * A volume lives on one node (replication comes with the cluster), so only single-node modes.
 * SINGLE_NODE_WRITER (Kubernetes ReadWriteOnce) may be published for several workloads on that node.
 */
const ACCESS_MODES: readonly AccessModeName[] = ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER'];

export function requireString(field: string, value: string | undefined | null): string {
  if (!value) throw invalidArgument(`${field} is required`);
  return value;
}

/** A CO-chosen name (volume or snapshot): required, without control characters (CSI's rule). */
export function requireName(field: string, value: string | undefined | null): string {
  const name = requireString(field, value);
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(name)) throw invalidArgument(`${field} must not contain control characters`);
  return name;
}

/** A path on this node: required and absolute. */
export function requirePath(field: string, value: string | undefined | null): string {
  const given = requireString(field, value);
  if (!path.isAbsolute(given)) throw invalidArgument(`${field} "${given}" must be an absolute path`);
  return normalPath(given);
}

/** One spelling per path: /a//b/ and /a/b are the same staging path (path.normalize keeps a trailing slash). */
function normalPath(absolute: string): string {
  const normal = path.normalize(absolute);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

/**
 * A path where the CO says a volume is (NodeGetVolumeStats, NodeExpandVolume): required. A relative
 * one is not refused as malformed: like any path the volume is not staged or published at, it
 * names no volume, which the caller answers with NOT_FOUND as the spec says.
 */
export function requireVolumePath(field: string, value: string | undefined | null): string {
  const given = requireString(field, value);
  return path.isAbsolute(given) ? normalPath(given) : given;
}

/** A capability with an access type and an access mode; whether Weft supports it is another matter. */
export function requireCapability(field: string, capability: VolumeCapability | null | undefined): VolumeCapability {
  if (!capability) throw invalidArgument(`${field} is required`);
  if (!capability.block && !capability.mount) throw invalidArgument(`${field}: access_type (block or mount) is required`);
  if (!capability.access_mode || capability.access_mode.mode === 'UNKNOWN') throw invalidArgument(`${field}.access_mode is required`);
  return capability;
}

/** A required, non-empty list of capabilities, each well-formed. */
export function requireCapabilities(field: string, capabilities: VolumeCapability[] | undefined | null): VolumeCapability[] {
  if (!capabilities || capabilities.length === 0) throw invalidArgument(`${field} is required`);
  return capabilities.map((capability, i) => requireCapability(`${field}[${i}]`, capability));
}

/** Why Weft cannot give a volume this capability, or undefined when it can. */
export function unsupportedReason(capability: VolumeCapability): string | undefined {
  const mode = capability.access_mode?.mode ?? 'UNKNOWN';
  if (!ACCESS_MODES.includes(mode)) return `access mode ${mode} is not supported (volumes are attached on one node: ${ACCESS_MODES.join(', ')})`;
  const fsType = capability.mount?.fs_type;
  if (fsType && !FS_TYPES.some((known) => known === fsType)) return `fs_type "${fsType}" is not supported (${FS_TYPES.join(', ')})`;
  return undefined;
}

/** The first reason any of the capabilities is unsupported, or undefined when all are supported. */
export function firstUnsupported(capabilities: VolumeCapability[]): string | undefined {
  return capabilities.map(unsupportedReason).find((reason) => reason !== undefined);
}

export function isBlock(capability: VolumeCapability): boolean {
  return Boolean(capability.block);
}

/** The filesystem a mount capability asks for, the default when it names none. */
export function fsTypeOf(capability: VolumeCapability): FsType {
  return (capability.mount?.fs_type as FsType | undefined) || DEFAULT_FS_TYPE;
}

/** A max_entries value: 0 (no limit) or more. */
export function checkMaxEntries(maxEntries: number): number {
  if (!Number.isInteger(maxEntries) || maxEntries < 0) throw invalidArgument(`max_entries ${maxEntries} must not be negative`);
  return maxEntries;
}
