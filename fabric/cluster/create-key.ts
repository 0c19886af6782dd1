// Puts a key that must not exist yet, telling a create that committed from one that did not when
// the store's answer was lost (a connection that broke after etcd had committed): the caller undoes
// what it made for the key only when it knows the key was not created by it.

import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError, type ClusterStore, type Txn } from './cluster-store';

/** The store's answer to a create was lost, and it could not be asked since whether the key was created. */
export class CreateOutcomeUnknownError extends StoreUnavailableError {
  constructor(key: string, cause: Error) {
    super(`the cluster store did not answer whether ${key} was created (${cause.message}), and cannot be asked now`);
    this.name = 'CreateOutcomeUnknownError';
  }
}

export interface CreateKeyOptions {
  /** How many times a create without an answer is sent again, and how far apart. */
  attempts?: number;
  retryMs?: number;
  /** What the transaction also holds to and does (the create's intent: create-intent.ts). */
  also?: Pick<Txn, 'compare' | 'success'>;
}

/**
 * Puts value at key if the key does not exist (and what options.also compares holds): true once
 * created by this call, false if the key exists and is not its (or the other compares failed). A create that fails without an answer is sent again as it was (so that a
 * late commit of the first cannot come after a look that saw nothing): refused, the key exists, and
 * `isMine` tells from its value whether the first one made it (the value may have changed since:
 * the record of a new volume is changed by its first primary at once). Rejects with
 * CreateOutcomeUnknownError if the store does not answer.
 */
export async function createKey(store: ClusterStore, key: string, value: string, isMine: (stored: string) => boolean, options: CreateKeyOptions = {}): Promise<boolean> {
  let lost: Error | undefined;
  for (let attempt = 0; attempt <= (options.attempts ?? 5); attempt++) {
    if (lost) await sleep(options.retryMs ?? 1000);
    try {
      const { succeeded } = await store.txn({
        compare: [{ key, target: 'createRevision', op: '=', value: 0 }, ...(options.also?.compare ?? [])],
        success: [{ type: 'put', key, value }, ...(options.also?.success ?? [])],
      });
      if (succeeded || !lost) return succeeded;
      const stored = await store.get(key);
      return stored !== undefined && isMine(stored.value);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      lost = err;
    }
  }
  throw new CreateOutcomeUnknownError(key, lost as Error);
}
