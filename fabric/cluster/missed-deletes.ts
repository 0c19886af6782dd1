// A snapshot of a replicated volume deleted while a node with a copy was down (or cut off) stays on
// that copy. Left so, it came back once that copy was the primary's, and its name could not be
// taken again (a copy held it). So the delete writes down, per node, the snapshots its copy missed,
// and the volume's primary deletes them, always in its own turn or while the copy is out (so that
// no snapshot of the name is taken meanwhile, which the delete would hit): before it resyncs the
// copy, as it begins to serve (its own copy), and before it takes a snapshot (of the name first; the
// others as far as the copies let it: a copy in sync that missed a delete would keep them). Until
// then, listings through that copy's node leave them out. Once the volume is deleted, its
// kept-snapshots key carries on.

import { WeftError } from '../errors';
import { changeKey, type ClusterStore, type KeyValue } from './cluster-store';
import { parseObject } from './volume-record';

/** Node name to the snapshots its copy of the volume missed the delete of. */
export type MissedDeletes = Record<string, string[]>;

export const missedDeletesPrefix = 'missed-snapshot-deletes/';
export const missedDeletesKey = (volume: string) => `${missedDeletesPrefix}${volume}`;

/** A key's value; a malformed one (a hand edit) names nothing. */
export function parseMissed(value: string): MissedDeletes {
  const parsed = parseObject(value) ?? {};
  const missed: MissedDeletes = {};
  for (const [node, names] of Object.entries(parsed)) {
    if (Array.isArray(names)) missed[node] = names.filter((n): n is string => typeof n === 'string');
  }
  return missed;
}

export async function missedDeletes(store: ClusterStore, volume: string): Promise<MissedDeletes> {
  const kv = await store.get(missedDeletesKey(volume));
  return kv ? parseMissed(kv.value) : {};
}

/** Every snapshot some copy missed the delete of, once each. */
export const everyMissed = (missed: MissedDeletes): string[] => [...new Set(Object.values(missed).flat())];

/**
 * Writes down that the copies on nodes missed the delete of snapshot, only while the volume's record
 * is still `record` (as read before the delete): false, writing nothing, once it has changed (a
 * snapshot taken since marks it, and the new one must not be deleted in the old one's place).
 */
export function addMissedDeletes(store: ClusterStore, volume: string, snapshot: string, nodes: readonly string[], record: KeyValue): Promise<boolean> {
  const adding = (missed: MissedDeletes) => {
    const missing = nodes.filter((node) => !missed[node]?.includes(snapshot));
    for (const node of missing) missed[node] = [...(missed[node] ?? []), snapshot];
    return missing.length > 0 ? missed : undefined;
  };
  return changeMissed(store, volume, adding, [record]);
}

/** Takes snapshots off node's list (they are gone from its copy), and nodes that are not the volume's copies any more (keeping: given). */
export async function clearMissedDeletes(store: ClusterStore, volume: string, node: string, snapshots: readonly string[], keeping?: readonly string[]): Promise<void> {
  await changeMissed(store, volume, (missed) => {
    let changed = false;
    for (const [n, names] of Object.entries(missed)) {
      const left = n === node ? names.filter((s) => !snapshots.includes(s)) : names;
      if (left.length === names.length && (keeping === undefined || keeping.includes(n))) continue;
      changed = true;
      if (left.length > 0 && (keeping === undefined || keeping.includes(n))) missed[n] = left;
      else delete missed[n];
    }
    return changed ? missed : undefined;
  });
}

/** What missed becomes once node is out of it; undefined if it is not in it. */
export function missedWithout(missed: MissedDeletes, node: string): MissedDeletes | undefined {
  if (!(node in missed)) return undefined;
  const { [node]: _gone, ...rest } = missed;
  return rest;
}

/** A value as stored: null for none (the key goes). */
export const storedMissed = (missed: MissedDeletes): string | null => (Object.keys(missed).length > 0 ? JSON.stringify(missed) : null);

/** Deletes each snapshot with del, in turn; one already gone is no failure. */
export async function deleteEach(snapshots: readonly string[], del: (snapshot: string) => Promise<void>): Promise<void> {
  for (const snapshot of snapshots) {
    await del(snapshot).catch((err: unknown) => {
      if (!(err instanceof WeftError && err.kind === 'NOT_FOUND')) throw err;
    });
  }
}

/**
 * Applies change by compare-and-swap; it answers undefined for "nothing to do". An empty list
 * deletes the key. False, changing nothing, once a key of unchanged has moved from its revision.
 */
function changeMissed(store: ClusterStore, volume: string, change: (missed: MissedDeletes) => MissedDeletes | undefined, unchanged: readonly KeyValue[] = []): Promise<boolean> {
  const stored = (value: string | undefined) => {
    const next = change(value === undefined ? {} : parseMissed(value));
    return next && storedMissed(next);
  };
  return changeKey(store, missedDeletesKey(volume), stored, { unchanged });
}
