// A replicated volume's create whose record put got no answer (create-key.ts: the outcome is
// unknown) leaves copies on their nodes that a record may or may not name. Kept as they are, they
// would hold the name on those nodes for good, and a create of it again would fail there. So the
// node that ran the create settles it in the background, once the store answers again.

import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError, type ClusterStore, type KeyValue } from './cluster-store';
import { leftoverKey, volumeKey, type VolumeRecord } from './volume-record';

export type LostCreateOutcome = 'created' | 'not-created';

/**
 * Asks the store, every retryMs until it answers, whether the lost send made the record. Made (the
 * record has this create's id, whatever else changed since): the volume exists ('created'). Not:
 * the record is absent, or it is another create's volume; the user was told UNAVAILABLE, and the
 * copies this create made (those another record does not name) are recorded as leftovers for their
 * nodes to delete (leftovers.ts), in one transaction with the look at the key, so that a record put
 * or changed meanwhile is looked at again ('not-created'). The record is never put from here: an
 * absent one may be this very volume, deleted since by a node that could reach the store.
 * Rejects when signal aborts (the daemon stops), and with the store's errors other than
 * StoreUnavailableError.
 */
export async function settleLostCreate(store: ClusterStore, record: VolumeRecord, made: string[], retryMs: number, signal: AbortSignal): Promise<LostCreateOutcome> {
  for (;;) {
    signal.throwIfAborted();
    try {
      const stored = await store.get(volumeKey(record.name));
      const other = stored && (JSON.parse(stored.value) as VolumeRecord);
      if (other && other.createId === record.createId) return 'created';
      if (await leaveCopies(store, record.name, made, stored, other || undefined)) return 'not-created';
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
    }
    // Cut short by an abort, which the loop's first line then throws. Unref'd: weftd does not wait for it.
    await sleep(retryMs, undefined, { ref: false, signal }).catch(() => undefined);
  }
}

/** Records the copies that the record under the name (if any: other) does not name as leftovers; false if the key changed since it was read. */
async function leaveCopies(store: ClusterStore, name: string, made: string[], stored: KeyValue | undefined, other: VolumeRecord | undefined): Promise<boolean> {
  const named = other ? other.replicas.map((r) => r.node) : [];
  const reason = JSON.stringify({ reason: 'its create was left without an answer, and the store holds no record of it' });
  const { succeeded } = await store.txn({
    compare: [stored ? { key: volumeKey(name), target: 'modRevision', op: '=', value: stored.modRevision } : { key: volumeKey(name), target: 'createRevision', op: '=', value: 0 }],
    success: made.filter((node) => !named.includes(node)).map((node) => ({ type: 'put' as const, key: leftoverKey(node, name), value: reason })),
  });
  return succeeded;
}
