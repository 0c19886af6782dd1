// A replicated volume's create whose record put got no answer (create-key.ts: the outcome is
// unknown) leaves copies on their nodes that a record may or may not name. Kept as they are, they
// would hold the name on those nodes for good, and a create of it again would fail there. So the
// node that ran the create settles it in the background, once the store answers again.

import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError, type ClusterStore } from './cluster-store';
import { createKey } from './create-key';
import { leftoverKey, volumeKey, type VolumeRecord } from './volume-record';

export type LostCreateOutcome = 'created' | 'another';

/**
 * Asks the store, every retryMs until it answers, whether the lost send made the record; if there
 * is none, puts it now. Made either way: the volume exists, as the user was told it might
 * ('created'). The name is another create's volume: the copies this one made on nodes that volume's
 * record does not name are recorded as leftovers, for their nodes to delete (leftovers.ts), in one
 * transaction with a look at that record, so that a copy it has named since is not among them
 * ('another'). Rejects with the store's other errors (it was closed: the daemon is stopping).
 */
export async function settleLostCreate(store: ClusterStore, record: VolumeRecord, made: string[], retryMs: number): Promise<LostCreateOutcome> {
  const key = volumeKey(record.name);
  const mine = (stored: string) => (JSON.parse(stored) as VolumeRecord).createId === record.createId;
  for (;;) {
    try {
      const stored = await store.get(key);
      if (stored && mine(stored.value)) return 'created';
      if (stored && (await leaveCopies(store, record.name, made))) return 'another';
      // Absent: put now. Refused if the lost send committed since: the next round finds it.
      if (!stored && (await createKey(store, key, JSON.stringify(record), mine, { attempts: 0 }))) return 'created';
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
    }
    await sleep(retryMs, undefined, { ref: false }); // a daemon that stops does not wait for it
  }
}

/** Records the copies the volume now under the name does not name as leftovers; false if that record changed meanwhile. */
async function leaveCopies(store: ClusterStore, name: string, made: string[]): Promise<boolean> {
  const kv = await store.get(volumeKey(name));
  if (!kv) return false; // deleted since: the next round puts this create's
  const named = (JSON.parse(kv.value) as VolumeRecord).replicas.map((r) => r.node);
  const reason = JSON.stringify({ reason: 'its create was left without an answer, and the name is another volume now' });
  const { succeeded } = await store.txn({
    compare: [{ key: volumeKey(name), target: 'modRevision', op: '=', value: kv.modRevision }],
    success: made.filter((node) => !named.includes(node)).map((node) => ({ type: 'put' as const, key: leftoverKey(node, name), value: reason })),
  });
  return succeeded;
}
