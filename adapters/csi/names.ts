// How CSI names and ids map to Weft's: volume ids are Weft volume names, snapshot ids are
// "VOLUME@SNAPSHOT", and a CO's name becomes a Weft name by a pure function (no state to keep).

import { createHash } from 'crypto';
import { CSI_CLONE_SNAPSHOT, isValidName } from '../../fabric/volume/names';
import { notFound } from './errors';

const HASHED_SUFFIX = /\.h[0-9a-f]{16}$/;
const PREFIX_CHARS = 44;
const CLONE_PREFIX = 'csi-clone.';

export function isWeftName(value: string): boolean {
  return isValidName(value);
}

/** A volume id that cannot be a Weft volume name names no volume: NOT_FOUND, before it names anything (a state file, say). */
export function volumeRef(id: string): string {
  if (!isWeftName(id)) throw notFound(`volume ${id} does not exist`);
  return id;
}

/**
 * The Weft volume or snapshot name (1-63 of [a-zA-Z0-9._-]) for a CO's name (up to 128 characters
 * of any kind). Pure, so idempotency needs no state and survives restarts:
 *   - a name that already is a valid Weft name is kept ("pvc-<uuid>" stays itself), unless it ends
 *     like a hashed name or has the form of a hidden clone snapshot;
 *   - any other name becomes a readable prefix (its first 44 characters, others replaced by "-")
 *     + ".h" + 16 hex digits of its SHA-256.
 * Kept names never end like hashed ones, so different names map to different Weft names (barring
 * a 64-bit hash collision), and never to a hidden clone snapshot ("csi-clone." + 16 hex digits,
 * which neither a kept nor a hashed name can be).
 */
export function weftName(csiName: string): string {
  if (isWeftName(csiName) && !HASHED_SUFFIX.test(csiName) && !isCloneSnapshot(csiName)) return csiName;
  const readable = csiName.replace(/[^a-zA-Z0-9._-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '').slice(0, PREFIX_CHARS) || 'csi';
  return `${readable}.h${hash(csiName)}`;
}

export interface SnapshotRef {
  volume: string;
  snapshot: string;
}

export function snapshotId(ref: SnapshotRef): string {
  return `${ref.volume}@${ref.snapshot}`;
}

/** The snapshot a snapshot id names, or undefined when the id cannot name one. */
export function parseSnapshotId(id: string): SnapshotRef | undefined {
  const parts = id.split('@');
  if (parts.length !== 2 || !isWeftName(parts[0]) || !isWeftName(parts[1])) return undefined;
  return { volume: parts[0], snapshot: parts[1] };
}

/** The hidden snapshot of the source taken to clone a volume into `target` (controller-server.ts). */
export function cloneSnapshotName(target: string): string {
  return `${CLONE_PREFIX}${hash(target)}`;
}

export function isCloneSnapshot(snapshot: string): boolean {
  return CSI_CLONE_SNAPSHOT.test(snapshot);
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
