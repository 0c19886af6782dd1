// `weft node forget` (forget-node.ts) on a real embedded store: a node that is down is forgotten
// with what it was told to drop; one that is up, or comes up while it is being forgotten, stays
// registered. The node's start is the transaction membership.ts makes (alive key and registration
// at once), run from inside the forget, between its steps.

import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import type { ClusterStore } from '../../fabric/cluster/cluster-store';
import { forgetNode } from '../../fabric/cluster/forget-node';
import { ALIVE, NODES } from '../../fabric/cluster/membership';
import { leftoverPrefix } from '../../fabric/cluster/volume-record';
import { WeftError } from '../../fabric/errors';
import { createLogger } from '../../fabric/logger';
import { startEtcd } from '../helpers/etcd';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const silent = createLogger('silent', 'test');

let store: EmbeddedStore;

beforeEach(async () => {
  store = await EmbeddedStore.open(makeTempDir('weft-forget-'), silent);
  await store.put(NODES + 'n1', JSON.stringify({ id: 'n1' }));
  await store.put(leftoverPrefix('n1') + 'v', JSON.stringify({}));
  await store.put(KEPT, JSON.stringify({ nodes: ['n1', 'n2'] }));
  await store.put(MISSED, JSON.stringify({ n1: ['s1'], n2: ['s2'] }));
});

/** n1 keeps the snapshots of deleted volume gone, with n2; the copies of w on n1 and n2 missed a snapshot delete each. */
const KEPT = 'kept-snapshots/gone';
const MISSED = 'missed-snapshot-deletes/w';
const valueOf = async (key: string) => JSON.parse((await store.get(key))?.value ?? 'null') as unknown;

afterEach(async () => {
  await store.close();
});

afterAll(cleanupAll);

/** n1 starts: its alive key on a lease and its registration, in one transaction, as membership.ts writes them. */
async function comeUp(): Promise<void> {
  const lease = await store.grantLease(30);
  const { succeeded } = await store.txn({
    compare: [{ key: ALIVE + 'n1', target: 'createRevision', op: '=', value: 0 }],
    success: [
      { type: 'put', key: ALIVE + 'n1', value: '{}', lease: lease.id },
      { type: 'put', key: NODES + 'n1', value: JSON.stringify({ id: 'n1', again: true }) },
    ],
  });
  expect(succeeded).toBe(true);
}

/** The store, with n1 coming up just before the forget's method `step` runs. */
function upBefore(step: 'txn' | 'list'): ClusterStore {
  let done = false;
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== 'function') return value;
      const bound = (value as (...args: unknown[]) => unknown).bind(target);
      if (prop !== step) return bound;
      return async (...args: unknown[]) => {
        if (!done) {
          done = true;
          await comeUp();
        }
        return bound(...args);
      };
    },
  });
}

async function refusal(forgetting: Promise<void>): Promise<WeftError> {
  const err = await forgetting.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WeftError);
  return err as WeftError;
}

test('a node that is down is forgotten: its registration, the copies it was told to drop, its snapshots kept and the deletes it missed', async () => {
  await forgetNode(store, 'n1');
  expect(await store.get(NODES + 'n1')).toBeUndefined();
  expect(await store.list(leftoverPrefix('n1'))).toEqual([]);
  expect(await valueOf(KEPT)).toEqual({ nodes: ['n2'] });
  expect(await valueOf(MISSED)).toEqual({ n2: ['s2'] });
});

test('a node that was told to drop hundreds of copies is forgotten on a real etcd, which refuses a transaction of more than 128 operations', async () => {
  const etcd = await startEtcd(1);
  const remote = await EtcdStore.open(etcd.endpoints);
  try {
    await remote.put(NODES + 'n1', JSON.stringify({ id: 'n1' }));
    for (let i = 0; i < 300; i++) await remote.put(`${leftoverPrefix('n1')}v${i}`, JSON.stringify({}));
    await forgetNode(remote, 'n1');
    expect(await remote.get(NODES + 'n1')).toBeUndefined();
    expect(await remote.list(leftoverPrefix('n1'))).toEqual([]);
  } finally {
    await remote.close(); // etcd goes with cleanupAll
  }
});

test('a node that is up is refused, and nothing of it changes', async () => {
  await comeUp();
  const err = await refusal(forgetNode(store, 'n1'));
  expect(err.kind).toBe('FAILED_PRECONDITION');
  expect(err.message).toMatch(/node n1 is up/);
  expect(await store.get(NODES + 'n1')).toBeDefined();
  expect(await store.list(leftoverPrefix('n1'))).toHaveLength(1);
});

test('a node that comes up while it is being forgotten stays registered, with the registration it wrote and the copies it was told to drop', async () => {
  const err = await refusal(forgetNode(upBefore('txn'), 'n1'));
  expect(err.kind).toBe('FAILED_PRECONDITION');
  expect(err.message).toMatch(/came up while it was being forgotten/);
  expect(JSON.parse((await store.get(NODES + 'n1'))?.value ?? 'null')).toEqual({ id: 'n1', again: true });
  expect(await store.list(leftoverPrefix('n1'))).toHaveLength(1);
  // It still holds those snapshots: it keeps its place among those that keep them, and what it missed.
  expect(await valueOf(KEPT)).toEqual({ nodes: ['n1', 'n2'] });
  expect(await valueOf(MISSED)).toEqual({ n1: ['s1'], n2: ['s2'] });
});

test('a node that comes up before its creates are given up is refused before they are', async () => {
  const err = await refusal(forgetNode(upBefore('list'), 'n1'));
  expect(err.message).toMatch(/node n1 is up/);
  expect(await store.list(leftoverPrefix('n1'))).toHaveLength(1);
  expect(await store.get(NODES + 'n1')).toBeDefined();
});
