// Puts a key that must not exist yet, telling a create that committed from one that did not when
// the store's answer was lost (a connection that broke after etcd had committed): the caller undoes
// what it made for the key only when it knows the key was not created.

import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError, type ClusterStore } from './cluster-store';

/** The store's answer to a create was lost, and it could not be asked since whether the key was created. */
export class CreateOutcomeUnknownError extends StoreUnavailableError {
  constructor(key: string, cause: Error) {
    super(`the cluster store did not answer whether ${key} was created (${cause.message}), and cannot be asked now`);
    this.name = 'CreateOutcomeUnknownError';
  }
}

export interface CreateKeyOptions {
  /** How many reads of the key after a lost answer, and how far apart. */
  attempts?: number;
  retryMs?: number;
}

/**
 * Puts value at key if the key does not exist: true once created, false if the key exists with
 * another value. A transaction that fails without an answer is looked up: the key holding exactly
 * value means it committed. Rejects with the transaction's error if it did not commit, and with
 * CreateOutcomeUnknownError if the store cannot tell.
 */
export async function createKey(store: ClusterStore, key: string, value: string, options: CreateKeyOptions = {}): Promise<boolean> {
  try {
    const { succeeded } = await store.txn({
      compare: [{ key, target: 'createRevision', op: '=', value: 0 }],
      success: [{ type: 'put', key, value }],
    });
    return succeeded;
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    const stored = await readUntilAnswered(store, key, options.attempts ?? 5, options.retryMs ?? 1000).catch(() => {
      throw new CreateOutcomeUnknownError(key, err);
    });
    if (stored === undefined) throw err;
    return stored === value;
  }
}

async function readUntilAnswered(store: ClusterStore, key: string, attempts: number, retryMs: number): Promise<string | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await store.get(key))?.value;
    } catch (err) {
      if (attempt >= attempts) throw err;
      await sleep(retryMs);
    }
  }
}
