// A create's record put in the cluster store (fabric/cluster/create-key.ts), on a real embedded
// store whose answers are lost as a broken connection to etcd loses them: a create that committed
// counts as made (its copies must not be undone), one that did not fails with the store's error,
// and one that cannot be told either way says so.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { StoreUnavailableError, type ClusterStore } from '../../fabric/cluster/cluster-store';
import { createKey, CreateOutcomeUnknownError } from '../../fabric/cluster/create-key';
import { EmbeddedStore } from '../../fabric/cluster/embedded-store';

let dir: string;
let store: EmbeddedStore;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-create-key-'));
  store = await EmbeddedStore.open(dir, pino({ level: 'silent' }));
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const lost = () => new StoreUnavailableError('etcd did not answer: connection reset');

/** The store, with its transactions and reads changed as given. */
function faulty(overrides: Partial<Pick<ClusterStore, 'txn' | 'get'>>): ClusterStore {
  return new Proxy(store, {
    get: (target, prop, receiver) => (prop in overrides ? overrides[prop as keyof typeof overrides] : (Reflect.get(target, prop, receiver) as unknown)),
  }) as ClusterStore;
}

const options = { attempts: 3, retryMs: 10 };

test('a create that committed but whose answer was lost counts as made', async () => {
  const answerLost = faulty({ txn: async (txn) => (await store.txn(txn), Promise.reject(lost())) });
  await expect(createKey(answerLost, 'volumes/v', '{"name":"v"}', options)).resolves.toBe(true);
  expect((await store.get('volumes/v'))?.value).toBe('{"name":"v"}');
});

test('a create that did not reach the store fails with its error, and nothing is there', async () => {
  const unreached = faulty({ txn: () => Promise.reject(lost()) });
  await expect(createKey(unreached, 'volumes/v', '{"name":"v"}', options)).rejects.toThrow(/connection reset/);
  expect(await store.get('volumes/v')).toBeUndefined();
});

test('a create whose answer was lost, the key holding another value: not made here', async () => {
  await store.put('volumes/v', '{"name":"v","other":true}');
  const answerLost = faulty({ txn: async (txn) => (await store.txn(txn), Promise.reject(lost())) });
  await expect(createKey(answerLost, 'volumes/v', '{"name":"v"}', options)).resolves.toBe(false);
  await expect(createKey(store, 'volumes/v', '{"name":"v"}', options)).resolves.toBe(false);
});

test('reads that fail for a while are tried again; a store that never answers leaves the outcome unknown', async () => {
  let failedReads = 0;
  const flaky = faulty({
    txn: async (txn) => (await store.txn(txn), Promise.reject(lost())),
    get: (key) => (++failedReads <= 2 ? Promise.reject(lost()) : store.get(key)),
  });
  await expect(createKey(flaky, 'volumes/a', 'A', options)).resolves.toBe(true);
  expect(failedReads).toBe(3);

  const silent = faulty({ txn: async (txn) => (await store.txn(txn), Promise.reject(lost())), get: () => Promise.reject(lost()) });
  const outcome = createKey(silent, 'volumes/b', 'B', options);
  await expect(outcome).rejects.toBeInstanceOf(CreateOutcomeUnknownError);
  await expect(outcome).rejects.toThrow(/did not answer whether volumes\/b was created/);
});
