// The cluster's metadata store: an etcd-like key-value store of strings with revisions,
// compare-and-swap transactions, leases and watches. Implemented by embedded-store.ts and etcd-store.ts.

import { WeftError } from '../errors';

/** A key as stored. Revisions are the store-wide revision of the change; version counts puts since creation. */
export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease the key lives and dies with, if any. */
  lease?: string;
}

/**
 * One condition of a transaction, as etcd evaluates it: an absent key has createRevision,
 * modRevision and version 0, and any comparison of its value is false.
 */
export type Compare =
  | { key: string; target: 'value'; op: CompareOp; value: string }
  | { key: string; target: 'createRevision' | 'modRevision' | 'version'; op: CompareOp; value: number };
export type CompareOp = '=' | '!=' | '<' | '>';

export type TxnOp = { type: 'put'; key: string; value: string; lease?: string } | { type: 'delete'; key: string };

/** If every compare holds, the success ops apply, else the failure ops: atomically, at one revision. */
export interface Txn {
  compare: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The store's revision after the transaction. */
  revision: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** Absent on delete. */
  value?: string;
  modRevision: number;
}

export interface WatchOptions {
  /** Replay every change from this revision on (inclusive) first. Default: only changes from now on. */
  fromRevision?: number;
  /** The watch ended on its own (e.g. its history was compacted while it was disconnected). */
  onError?: (error: Error) => void;
}

export interface StoreWatch {
  close(): Promise<void>;
}

/**
 * A lease kept alive by the store for as long as the holder runs. Keys put with it vanish when it
 * expires or is revoked. The holder learns through onLost that it no longer holds it.
 */
export abstract class StoreLease {
  private readonly lostListeners: ((error: Error) => void)[] = [];
  private lostError?: Error;
  private ended = false;

  constructor(readonly id: string, readonly ttlSeconds: number) {}

  /** Called once if the lease is lost (not kept alive in time, or revoked elsewhere); never after revoke(). */
  onLost(listener: (error: Error) => void): void {
    const error = this.lostError;
    if (error) queueMicrotask(() => listener(error));
    else this.lostListeners.push(listener);
  }

  /** Ends the lease now; its keys are deleted. */
  async revoke(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.revokeNow();
  }

  protected abstract revokeNow(): Promise<void>;

  /** The implementation learnt that the lease is gone; tells the listeners once. */
  protected lost(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.lostError = error;
    for (const listener of this.lostListeners.splice(0)) listener(error);
  }
}

export interface ClusterStore {
  get(key: string): Promise<KeyValue | undefined>;
  /** get(), with the store's revision the answer is of: an absent key is absent as of it. */
  read(key: string): Promise<{ kv: KeyValue | undefined; revision: number }>;
  /** Every key that starts with prefix, sorted by key. */
  list(prefix: string): Promise<KeyValue[]>;
  /** Resolves with the revision of the change, once it is durable. */
  put(key: string, value: string, options?: { lease?: string }): Promise<number>;
  /** Whether the key existed. */
  delete(key: string): Promise<boolean>;
  /** How many keys were deleted. */
  deletePrefix(prefix: string): Promise<number>;
  txn(txn: Txn): Promise<TxnResult>;
  grantLease(ttlSeconds: number): Promise<StoreLease>;
  /** Calls onEvent for every change under prefix, in revision order, until closed. */
  watch(prefix: string, options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<StoreWatch>;
  /** The store's current revision. */
  revision(): Promise<number>;
  /** Stops keeping leases alive (their keys expire as if this node died) and ends the watches. */
  close(): Promise<void>;
}

/** The store cannot be reached or cannot make a change durable: nothing can be said of the change. */
export class StoreUnavailableError extends WeftError {
  constructor(message: string) {
    super('UNAVAILABLE', message);
    this.name = 'StoreUnavailableError';
  }
}

/** A watch asked for changes older than the history the store keeps. */
export class StoreCompactedError extends WeftError {
  /** oldestRevision: where the history starts now, when the store says. */
  constructor(readonly fromRevision: number, readonly oldestRevision?: number) {
    const starts = oldestRevision === undefined ? '' : `, it starts at revision ${oldestRevision}`;
    super('FAILED_PRECONDITION', `cannot watch from revision ${fromRevision}: the store's history was compacted${starts}`);
    this.name = 'StoreCompactedError';
  }
}

export const leaseNotFound = (id: string) => new WeftError('NOT_FOUND', `lease ${id} not found: it expired or was revoked`);

/** Transactions may not touch one key twice (etcd refuses it too). */
export function checkTxnOps(ops: readonly TxnOp[]): void {
  const keys = new Set<string>();
  for (const op of ops) {
    if (keys.has(op.key)) throw new WeftError('INVALID_ARGUMENT', `a transaction changes key "${op.key}" twice`);
    keys.add(op.key);
  }
}

/**
 * Changes one key by compare-and-swap, tried again when it changed under the change (at most
 * attempts times). change gets its value (undefined: absent) and answers the new value, null to
 * delete the key, or undefined for nothing to do. With unchanged, the change is made only while
 * those keys are still at the revisions given: false, changing nothing, once one has moved.
 */
export async function changeKey(
  store: ClusterStore,
  key: string,
  change: (value: string | undefined) => string | null | undefined,
  options: { unchanged?: readonly KeyValue[]; attempts?: number } = {},
): Promise<boolean> {
  const { unchanged = [], attempts = 10 } = options;
  const atRevision = (k: string, modRevision: number): Compare => ({ key: k, target: 'modRevision', op: '=', value: modRevision });
  for (let attempt = 0; attempt < attempts; attempt++) {
    const kv = await store.get(key);
    const next = change(kv?.value);
    if (next === undefined) return true;
    const { succeeded } = await store.txn({
      compare: [atRevision(key, kv?.modRevision ?? 0), ...unchanged.map((guard) => atRevision(guard.key, guard.modRevision))],
      success: [next === null ? { type: 'delete', key } : { type: 'put', key, value: next }],
    });
    if (succeeded) return true;
    for (const guard of unchanged) if ((await store.get(guard.key))?.modRevision !== guard.modRevision) return false;
  }
  throw new WeftError('ABORTED', `${key} changed ${attempts} times while it was being changed: try again`);
}
