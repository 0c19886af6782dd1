// Copies a volume no longer names, left on this node: the volume was deleted while the node was
// down, or a replacement took the copy's place (leftoverKey in the store, written by whoever saw
// it happen). Once the node is up, it deletes each such copy, then its key. A copy a client still
// has open stays, with its key, and is tried again later (the key may go meanwhile: then it stays).

import type { Logger } from '../logger';
import type { ClusterStore, StoreWatch } from './cluster-store';
import { leftoverPrefix } from './volume-record';

/** After its watch ended (etcd out of reach, its history compacted): when the keys are read again. */
const FOLLOW_AGAIN_MS = 1000;

/** A drop that failed is tried again after this, then after twice as long each time, up to DROP_AGAIN_MAX_MS. */
const DROP_AGAIN_MS = 5000;
const DROP_AGAIN_MAX_MS = 5 * 60_000;

/**
 * Drops the copies the store lists as left on node now, and those it lists from now on; if its watch
 * ends, reads the list again and follows on. The first reading's failure is the caller's.
 */
export async function dropLeftovers(store: ClusterStore, node: string, drop: (volume: string) => Promise<void>, logger: Logger): Promise<StoreWatch> {
  const prefix = leftoverPrefix(node);
  let closed = false;
  // One try waiting per copy: a try for any reason (its key listed again, as after the watch ended)
  // takes the place of the one waiting.
  const dropsAgain = new Map<string, NodeJS.Timeout>();
  const dropOne = (volume: string, againMs = DROP_AGAIN_MS): void => {
    clearTimeout(dropsAgain.get(volume));
    dropsAgain.delete(volume);
    void drop(volume).catch((err: unknown) => {
      if (closed) return;
      logger.warn({ volume, err, againMs }, 'could not delete a copy its volume no longer names; trying again later');
      clearTimeout(dropsAgain.get(volume));
      dropsAgain.set(volume, setTimeout(() => dropOne(volume, Math.min(2 * againMs, DROP_AGAIN_MAX_MS)), againMs));
    });
  };
  let current: StoreWatch | undefined;
  let retry: NodeJS.Timeout | undefined;
  const again = () => {
    if (closed) return;
    retry = setTimeout(() => void follow().catch((err: unknown) => ended(err as Error)), FOLLOW_AGAIN_MS);
  };
  const ended = (err: Error) => {
    logger.warn({ err }, 'the watch of copies left on this node ended; reading them again');
    void current?.close().catch(() => undefined);
    current = undefined;
    again();
  };
  const follow = async () => {
    const revision = await store.revision();
    for (const kv of await store.list(prefix)) dropOne(kv.key.slice(prefix.length));
    let watch: StoreWatch | undefined;
    // A watch reports its end once (an error and a disconnect may both come): only the one followed counts.
    const onError = (err: Error) => {
      if (watch !== undefined && watch === current) ended(err);
    };
    watch = await store.watch(prefix, { fromRevision: revision + 1, onError }, (event) => {
      if (event.type === 'put') dropOne(event.key.slice(prefix.length));
    });
    if (closed) await watch.close();
    else current = watch;
  };
  await follow();
  return {
    close: async () => {
      closed = true;
      clearTimeout(retry);
      for (const timer of dropsAgain.values()) clearTimeout(timer);
      await current?.close();
    },
  };
}
