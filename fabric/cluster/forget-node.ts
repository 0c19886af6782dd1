// `weft node forget NODE`: a node that will not come back (its machine is gone) is taken out of the
// cluster store, so that nothing waits for it: its registration, the copies it was told to drop,
// its place among the nodes that keep a deleted volume's snapshots (which freed that volume's name
// once the others hold none), the snapshot deletes its copies missed, and the creates it began
// (their copies elsewhere are deleted).
// Refused while it is up, or while a volume's record still names a copy on it (those are replaced
// after --replica-timeout, or go with their volume).

import { failedPrecondition, WeftError } from '../errors';
import type { ClusterStore, KeyValue, Txn, TxnOp } from './cluster-store';
import { giveUpCreatesOf } from './create-intent';
import { keptSnapshotsPrefix, keptWithout, parseKept, storedKept } from './kept-snapshots';
import { ALIVE, NODES } from './membership';
import { missedDeletesPrefix, missedWithout, parseMissed, storedMissed } from './missed-deletes';
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
  // Its creates cut short: their copies on the other nodes become leftovers (none for it: below).
  await refuseIfUp(store, node); // a create it runs now, back up, would find its intent gone
  await giveUpCreatesOf(store, node);
  // Its place among the nodes that keep a deleted volume's snapshots, the snapshot deletes it missed,
  // then its registration and the copies it was told to drop go, each only if it is still down and
  // has not registered again since (a start writes both keys at once): a node that comes back
  // meanwhile stays in the cluster, as it still holds those copies and snapshots. In transactions of
  // a few keys each: etcd refuses one of more than 128 operations.
  const stillDown = [
    { key: ALIVE + node, target: 'createRevision' as const, op: '=' as const, value: 0 },
    { key: NODES + node, target: 'modRevision' as const, op: '=' as const, value: registered.modRevision },
  ];
  const released = [
    ...(await store.list(keptSnapshotsPrefix)).map((kv) => [kv, maybe(keptWithout(parseKept(kv.value), [node]), storedKept)] as const),
    ...(await store.list(missedDeletesPrefix)).map((kv) => [kv, maybe(missedWithout(parseMissed(kv.value), node), storedMissed)] as const),
  ].filter((change): change is readonly [KeyValue, string | null] => change[1] !== undefined);
  for (let at = 0; at < released.length; at += KEYS_PER_TXN) {
    const batch = released.slice(at, at + KEYS_PER_TXN);
    await forgetIf(store, node, registered.modRevision, {
      compare: [...stillDown, ...batch.map(([kv]) => ({ key: kv.key, target: 'modRevision' as const, op: '=' as const, value: kv.modRevision }))],
      success: batch.map(([kv, value]): TxnOp => (value === null ? { type: 'delete', key: kv.key } : { type: 'put', key: kv.key, value })),
    });
  }
  // Its registration with the copies it was told to drop, in one transaction while they fit in one.
  // A node of many copies has hundreds: those go in batches first, its registration last. If it
  // comes up part way, the copies whose keys went are left on it; the refusal names them.
  const leftovers = await store.list(leftoverPrefix(node));
  const deletes = (kvs: KeyValue[]) => kvs.map((kv): TxnOp => ({ type: 'delete', key: kv.key }));
  const batched = leftovers.length < KEYS_PER_TXN ? [] : leftovers;
  for (let at = 0; at < batched.length; at += KEYS_PER_TXN) {
    await forgetIf(store, node, registered.modRevision, { compare: stillDown, success: deletes(batched.slice(at, at + KEYS_PER_TXN)) }, copiesOf(batched.slice(0, at)));
  }
  const last = batched.length > 0 ? [] : leftovers;
  await forgetIf(store, node, registered.modRevision, { compare: stillDown, success: [{ type: 'delete', key: NODES + node }, ...deletes(last)] }, copiesOf(batched));
}

/** The volumes whose copies the leftover keys name. */
function copiesOf(leftovers: KeyValue[]): string[] {
  return leftovers.map((kv) => kv.key.slice(kv.key.lastIndexOf('/') + 1));
}

/** Keys changed in one transaction of a forget (each with its compare). */
const KEYS_PER_TXN = 50;

/** Runs txn; refused, says why: the node came up (after the leftover keys of `undropped` went), or the keys changed under it. */
async function forgetIf(store: ClusterStore, node: string, registeredRevision: number, txn: Txn, undropped: string[] = []): Promise<void> {
  if ((await store.txn(txn)).succeeded) return;
  if ((await store.get(ALIVE + node)) || (await store.get(NODES + node))?.modRevision !== registeredRevision) {
    const left = undropped.length > 0 ? `; it no longer drops its copies of ${undropped.join(', ')} by itself: delete them there (weft volume delete)` : '';
    throw failedPrecondition(`node ${node} came up while it was being forgotten: it stays registered; stop it before forgetting it${left}`);
  }
  throw new WeftError('ABORTED', `the snapshots of deleted volumes changed while node ${node} was being forgotten: try again`);
}

/** f of value, unless it is undefined. */
function maybe<T, U>(value: T | undefined, f: (value: T) => U): U | undefined {
  return value === undefined ? undefined : f(value);
}

async function refuseIfUp(store: ClusterStore, node: string): Promise<void> {
  if (await store.get(ALIVE + node)) throw failedPrecondition(`node ${node} is up: stop it (and let its lease lapse) before forgetting it`);
}
