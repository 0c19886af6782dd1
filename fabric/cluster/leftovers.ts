// Copies a volume no longer names, left on this node: the volume was deleted while the node was
// down, or a replacement took the copy's place (leftoverKey in the store, written by whoever saw
// it happen). Once the node is up, it deletes each such copy, then its key. A copy a client still
// has open stays, with its key, until the next start.

import type { Logger } from '../logger';
import type { ClusterStore, StoreWatch } from './cluster-store';
import { leftoverPrefix } from './volume-record';

/** Drops the copies the store lists as left on node now, and those it lists from now on. */
export async function dropLeftovers(store: ClusterStore, node: string, drop: (volume: string) => Promise<void>, logger: Logger): Promise<StoreWatch> {
  const prefix = leftoverPrefix(node);
  const dropOne = (volume: string) =>
    void drop(volume).catch((err: unknown) => logger.warn({ volume, err }, 'could not delete a copy its volume no longer names; trying again at the next start'));
  const revision = await store.revision();
  for (const kv of await store.list(prefix)) dropOne(kv.key.slice(prefix.length));
  const onError = (err: Error) => logger.warn({ err }, 'the watch of copies left on this node ended; they are deleted at the next start');
  return store.watch(prefix, { fromRevision: revision + 1, onError }, (event) => {
    if (event.type === 'put') dropOne(event.key.slice(prefix.length));
  });
}
