// Snapshots outlive their volume (as Kubernetes expects of VolumeSnapshots). A replicated volume's
// snapshots are on the nodes of its copies, and once its record is gone nothing else says where:
// so the delete that removes the record puts, in the same transaction, a kept-snapshots key naming
// those nodes. Listing, deleting and cloning a deleted volume's snapshots ask them.
//
// A node leaves the key once it holds no snapshot of the name (it may never have held one): it
// takes itself out when it drops its copy or starts, and a listing takes out those that answer with
// none; the last one out deletes the key. While the key exists, the name is not free for a new
// volume (a new volume's snapshots would be mixed with the old ones on the nodes that hold both),
// and so no snapshot of the name is made again: a snapshot deleted while a node that keeps it was
// down is written down as deleted, and that node deletes it when it starts (or a listing does).

import { changeKey, type ClusterStore } from './cluster-store';
import { parseObject } from './volume-record';

export interface KeptSnapshots {
  /** The nodes that may still hold snapshots of the deleted volume. */
  nodes: string[];
  /** Snapshots deleted while some of nodes did not answer: wherever they are found, they go. */
  deleted?: string[];
}

export const keptSnapshotsPrefix = 'kept-snapshots/';
export const keptSnapshotsKey = (volume: string) => `${keptSnapshotsPrefix}${volume}`;

/** Where the snapshots of a deleted replicated volume of this name may be; undefined: nowhere recorded. */
export async function keptSnapshots(store: ClusterStore, volume: string): Promise<KeptSnapshots | undefined> {
  const kv = await store.get(keptSnapshotsKey(volume));
  const kept = kv && parseKept(kv.value);
  return kept && kept.nodes.length > 0 ? kept : undefined; // a key with no node is deleted as it empties: none is recorded
}

/** A key's value; one that is none (a hand edit) names no node, and holds nothing up (tidying, forgetting a node). */
export function parseKept(value: string): KeptSnapshots {
  const parsed = parseObject(value);
  const names = (list: unknown) => (Array.isArray(list) ? list.filter((n): n is string => typeof n === 'string') : []);
  return { nodes: names(parsed?.nodes), ...(Array.isArray(parsed?.deleted) ? { deleted: names(parsed.deleted) } : {}) };
}

/** Takes nodes out of the volume's kept-snapshots key (deleting the key when none is left). */
export function leaveKeptSnapshots(store: ClusterStore, volume: string, leaving: readonly string[]): Promise<void> {
  return changeKept(store, volume, (kept) => keptWithout(kept, leaving));
}

/** What kept becomes once the nodes leave it; undefined if none of them is in it. */
export function keptWithout(kept: KeptSnapshots, leaving: readonly string[]): KeptSnapshots | undefined {
  if (!kept.nodes.some((n) => leaving.includes(n))) return undefined;
  return { ...kept, nodes: kept.nodes.filter((n) => !leaving.includes(n)) };
}

/** A kept-snapshots value as stored: null for none (no node left: the key goes). */
export const storedKept = (kept: KeptSnapshots): string | null => (kept.nodes.length > 0 ? JSON.stringify(kept) : null);

/** Writes down that a snapshot of the deleted volume was deleted, for the nodes that did not answer. */
export function markKeptDeleted(store: ClusterStore, volume: string, snapshot: string): Promise<void> {
  return changeKept(store, volume, (kept) => (kept.deleted?.includes(snapshot) ? undefined : { ...kept, deleted: [...(kept.deleted ?? []), snapshot] }));
}

/** Applies change to the key by compare-and-swap; change answers undefined for "nothing to do". */
async function changeKept(store: ClusterStore, volume: string, change: (kept: KeptSnapshots) => KeptSnapshots | undefined): Promise<void> {
  await changeKey(store, keptSnapshotsKey(volume), (value) => {
    const next = value === undefined ? undefined : change(parseKept(value));
    return next && storedKept(next);
  });
}
