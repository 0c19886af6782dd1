// A replicated volume's create whose record put got no answer (create-key.ts: the outcome is
// unknown), or that failed while the store did not answer, leaves copies on their nodes that a
// record may or may not name. So the node that ran the create settles it in the background, once
// the store answers again (create-intent.ts): given up if its intent is still its own (its copies,
// marked or known made, left to their nodes to delete), else made if the record is its own.

import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError, type ClusterStore } from './cluster-store';
import { giveUpCreate, type HeldIntent } from './create-intent';
import { parseVolumeRecord, volumeKey } from './volume-record';

export type LostCreateOutcome = 'created' | 'not-created';

/**
 * Asks the store, every retryMs until it answers. Its intent still there: the create is given up
 * ('not-created'). Gone: the record's transaction took it, or another node gave the create up, and
 * neither can change now (a record put needs the intent): 'created' if the record has this create's
 * id, whatever else changed since. The record is never put from here. Rejects when signal aborts
 * (the daemon stops), and with the store's errors other than StoreUnavailableError.
 */
export async function settleLostCreate(store: ClusterStore, intent: HeldIntent, made: readonly string[], retryMs: number, signal: AbortSignal): Promise<LostCreateOutcome> {
  for (;;) {
    signal.throwIfAborted();
    try {
      if (await giveUpCreate(store, intent, made)) return 'not-created';
      const stored = await store.get(volumeKey(intent.name));
      return stored && parseVolumeRecord(stored.value)?.createId === intent.createId ? 'created' : 'not-created';
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
    }
    // Cut short by an abort, which the loop's first line then throws. Unref'd: weftd does not wait for it.
    await sleep(retryMs, undefined, { ref: false, signal }).catch(() => undefined);
  }
}
