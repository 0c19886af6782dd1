// A create's record put in the cluster store (fabric/cluster/create-key.ts), on a real embedded
// store whose answers are lost as a broken connection to etcd loses them: a create that committed
// counts as made (its copies must not be undone), one that did not is sent again, and one that
// cannot be told either way says so.

import { StoreUnavailableError, type ClusterStore } from '../../fabric/cluster/cluster-store';
import { createKey, CreateOutcomeUnknownError } from '../../fabric/cluster/create-key';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';

const current = freshEmbeddedStore();
let store: ClusterStore;
beforeEach(() => (store = current()));

const lost = () => new StoreUnavailableError('etcd did not answer: connection reset');

/** The store, with its transactions and reads changed as given. */
const faulty = (calls: Partial<Pick<ClusterStore, 'txn' | 'get'>>) => withCalls(store, calls);

const options = { attempts: 3, retryMs: 10 };
/** Values are records with the id of the create that made them, as a volume's record has. */
const recordOf = (createId: string, epoch = 0) => JSON.stringify({ name: 'v', epoch, createId });
const madeBy = (createId: string) => (stored: string) => (JSON.parse(stored) as { createId: string }).createId === createId;

test('a create that committed but whose answer was lost counts as made, though its record changed since', async () => {
  let sent = 0;
  const answerLost = faulty({
    txn: async (txn) => {
      const result = await store.txn(txn);
      if (++sent > 1) return result;
      await store.put('volumes/v', recordOf('mine', 1)); // its first primary took over at once
      throw lost();
    },
  });
  await expect(createKey(answerLost, 'volumes/v', recordOf('mine'), madeBy('mine'), options)).resolves.toBe(true);
  expect((await store.get('volumes/v'))?.value).toBe(recordOf('mine', 1));
});

test('a create that did not reach the store is sent again', async () => {
  let sent = 0;
  const firstLost = faulty({ txn: (txn) => (++sent === 1 ? Promise.reject(lost()) : store.txn(txn)) });
  await expect(createKey(firstLost, 'volumes/v', recordOf('mine'), madeBy('mine'), options)).resolves.toBe(true);
  expect(sent).toBe(2);
  expect((await store.get('volumes/v'))?.value).toBe(recordOf('mine'));
});

test('a first send that commits only after its answer was given up: the create made it, once', async () => {
  const late: Promise<unknown>[] = [];
  let sent = 0;
  const lateCommit = faulty({
    txn: (txn) => {
      if (++sent > 1) return store.txn(txn);
      late.push(new Promise((resolve) => setTimeout(resolve, 15)).then(() => store.txn(txn)));
      return Promise.reject(lost());
    },
  });
  await expect(createKey(lateCommit, 'volumes/v', recordOf('mine'), madeBy('mine'), options)).resolves.toBe(true);
  await Promise.all(late);
  expect((await store.get('volumes/v'))?.value).toBe(recordOf('mine'));
});

test("a key that exists is not the create's, also when its answer was lost", async () => {
  await store.put('volumes/v', recordOf('theirs'));
  await expect(createKey(store, 'volumes/v', recordOf('mine'), madeBy('mine'), options)).resolves.toBe(false);
  let sent = 0;
  const firstLost = faulty({ txn: (txn) => (++sent === 1 ? Promise.reject(lost()) : store.txn(txn)) });
  await expect(createKey(firstLost, 'volumes/v', recordOf('mine'), madeBy('mine'), options)).resolves.toBe(false);
  expect((await store.get('volumes/v'))?.value).toBe(recordOf('theirs'));
});

test('a store that does not answer for a while is asked again; one that never answers leaves the outcome unknown', async () => {
  let sent = 0;
  const flaky = faulty({ txn: async (txn) => (++sent <= 3 ? Promise.reject(lost()) : store.txn(txn)) });
  await expect(createKey(flaky, 'volumes/a', recordOf('a'), madeBy('a'), options)).resolves.toBe(true);
  expect(sent).toBe(4);

  const silent = faulty({ txn: () => Promise.reject(lost()) });
  const outcome = createKey(silent, 'volumes/b', recordOf('b'), madeBy('b'), options);
  await expect(outcome).rejects.toBeInstanceOf(CreateOutcomeUnknownError);
  await expect(outcome).rejects.toThrow(/did not answer whether volumes\/b was created/);
  expect(await store.get('volumes/b')).toBeUndefined();
});
