// `weft node forget NODE`: a node that will not come back (its machine is gone) is taken out of the
// cluster store, so that nothing waits for it: its registration, the copies it was told to drop,
// its place among the nodes that keep a deleted volume's snapshots (which freed that volume's name
// once the others hold none), the snapshot deletes its copies missed, and the creates it began
// (their copies elsewhere are deleted).
// Refused while it is up, or while a volume's record still names a copy on it (those are replaced
// after --replica-timeout, or go with their volume).

import { failedPrecondition } from '../errors';
import type { ClusterStore } from './cluster-store';
import { giveUpCreatesOf } from './create-intent';
import { keptSnapshotsPrefix, leaveKeptSnapshots, parseKept } from './kept-snapshots';
import { ALIVE, NODES } from './membership';
import { clearMissedDeletes, missedDeletesPrefix, parseMissed } from './missed-deletes';
import { leftoverPrefix, parseVolumeRecord, VOLUMES } from './volume-record';

export async function forgetNode(store: ClusterStore, node: string): Promise<void> {
  const registered = await store.get(NODES + node);
  if (!registered) throw failedPrecondition(`node ${node} is not registered in the cluster`);
  await refuseIfUp(store, node);
  const named = (await store.list(VOLUMES)).flatMap((kv) => parseVolumeRecord(kv.value) ?? []).filter((r) => r.replicas.some((c) => c.node === node));
  if (named.length > 0) {
    const [volumes, have] = named.length === 1 ? ['volume', 'has'] : ['volumes', 'have'];
    throw failedPrecondition(
      `${volumes} ${named.map((r) => r.name).join(', ')} still ${have} a copy on node ${node}: wait until it is replaced (--replica-timeout), or delete ${named.length === 1 ? 'it' : 'them'}`,
    );
  }
  for (const kv of await store.list(keptSnapshotsPrefix)) {
    if (parseKept(kv.value).nodes.includes(node)) await leaveKeptSnapshots(store, kv.key.slice(keptSnapshotsPrefix.length), [node]);
  }
  for (const kv of await store.list(missedDeletesPrefix)) {
    const missed = parseMissed(kv.value)[node];
    if (missed) await clearMissedDeletes(store, kv.key.slice(missedDeletesPrefix.length), node, missed);
  }
  // Its creates cut short: their copies on the other nodes become leftovers (none for it: below).
  await refuseIfUp(store, node); // a create it runs now, back up, would find its intent gone
  await giveUpCreatesOf(store, node);
  // Its registration and the copies it was told to drop go only if it is still down and has not
  // registered again since (a start writes both keys at once): a node that came back meanwhile
  // stays in the cluster, with its copies to drop.
  const leftovers = await store.list(leftoverPrefix(node));
  const forgotten = await store.txn({
    compare: [
      { key: ALIVE + node, target: 'createRevision', op: '=', value: 0 },
      { key: NODES + node, target: 'modRevision', op: '=', value: registered.modRevision },
    ],
    success: [{ type: 'delete', key: NODES + node }, ...leftovers.map((kv) => ({ type: 'delete' as const, key: kv.key }))],
  });
  if (!forgotten.succeeded) throw failedPrecondition(`node ${node} came up while it was being forgotten: it stays registered; stop it before forgetting it`);
}

async function refuseIfUp(store: ClusterStore, node: string): Promise<void> {
  if (await store.get(ALIVE + node)) throw failedPrecondition(`node ${node} is up: stop it (and let its lease lapse) before forgetting it`);
}
