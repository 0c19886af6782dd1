// Claims on volumes of the cluster for attachments (attach-claims.ts): one node at a time, on the
// node's cluster lease, carried to a new lease, never put back once released, and not left behind
// by a claim whose answer was lost. Nodes' claims over one real embedded store.

import { AttachClaims, attachClaimKey, claimHolder } from '../../fabric/cluster/attach-claims';
import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import type { ClusterStore, StoreLease, Txn } from '../../fabric/cluster/cluster-store';
import { WeftError } from '../../fabric/errors';
import { createLogger } from '../../fabric/logger';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const silent = createLogger('silent', 'test');

let store: EmbeddedStore;
let n1: AttachClaims;
let n2: AttachClaims;
let lease1: StoreLease;

beforeAll(async () => {
  store = await EmbeddedStore.open(makeTempDir('weft-claims-'), silent);
  n1 = new AttachClaims(store, 'n1', inCluster, silent);
  n2 = new AttachClaims(store, 'n2', inCluster, silent);
  lease1 = await store.grantLease(3);
  n1.setLease(lease1.id);
  n2.setLease((await store.grantLease(3)).id);
});

afterAll(async () => {
  n1?.close();
  n2?.close();
  await store?.close();
  await cleanupAll();
});

/** The volumes of the cluster (a name the test drops is deleted). */
const cluster = new Set(['v', 'w', 'x', 'y', 'z', 'lost', 'kept']);
const inCluster = (volume: string) => cluster.has(volume);

const holder = async (volume: string) => (await store.get(attachClaimKey(volume)))?.value;

test('one node at a time: the other is refused, naming the holder, until the holder releases', async () => {
  await n1.claim('v');
  await n1.claim('v'); // again: its own
  await expect(n2.claim('v')).rejects.toThrow('volume v is attached on node n1: a volume is attached on one node at a time; it is released once that node has detached it (or is down)');
  await n2.release('v'); // holds none: n1's stays
  expect(await holder('v')).toBe('{"node":"n1"}');
  await n1.release('v');
  expect(await holder('v')).toBeUndefined();
  await n2.claim('v');
  expect(await holder('v')).toBe('{"node":"n2"}');
  await n2.release('v');
});

test('a claim lives on the lease given with the latest setLease: a new lease carries it, the old one lapsing takes nothing', async () => {
  await n1.claim('w');
  const lease2 = await store.grantLease(3);
  n1.setLease(lease2.id);
  await waitFor(async () => (await store.get(attachClaimKey('w')))?.lease === lease2.id, 5000, 20);
  await lease1.revoke();
  expect(await holder('w')).toBe('{"node":"n1"}');
  await expect(n2.claim('w')).rejects.toThrow(/attached on node n1/);
  // That lease ends (the node is down): the volume may be attached elsewhere.
  await lease2.revoke();
  expect(await holder('w')).toBeUndefined();
  await n2.claim('w');
  await n2.release('w');
});

test('a node without a lease (cut from the store) claims nothing', async () => {
  const alone = new AttachClaims(store, 'n3', inCluster, silent);
  await expect(alone.claim('x')).rejects.toThrow('node n3 is not up in the cluster (its lease lapsed): volume x cannot be claimed now; try again');
  expect(await holder('x')).toBeUndefined();
});

test('a claim on a lease that ended is UNAVAILABLE (the node is not up), not NOT_FOUND', async () => {
  // n1's lease was revoked above.
  await expect(n1.claim('y')).rejects.toMatchObject({ kind: 'UNAVAILABLE', message: 'node n1 lost its cluster lease while claiming volume y; try again' });
  n1.setLease((await store.grantLease(3)).id);
});

test('a release while the claim is being carried to a new lease: the claim is not put back', async () => {
  await n1.claim('y');
  const lease = await store.grantLease(3);
  n1.setLease(lease.id); // carries y to the new lease, in the background
  await n1.release('y');
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(await holder('y')).toBeUndefined();
  expect(n1.wants('y')).toBe(false);
  await n2.claim('y');
  await n2.release('y');
});

test('a volume deleted from the cluster is not claimed again on a new lease', async () => {
  await n1.claim('z');
  await store.delete(attachClaimKey('z')); // as the volume's delete does
  cluster.delete('z');
  n1.setLease((await store.grantLease(3)).id);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(await holder('z')).toBeUndefined();
  expect(n1.wants('z')).toBe(false);
});

/** The store, but the answer to the next transaction is lost after it was applied. */
function losingNextAnswer(real: ClusterStore): ClusterStore & { loseNext: () => void } {
  let lose = false;
  return Object.assign(Object.create(real) as ClusterStore, {
    loseNext: () => (lose = true),
    txn: async (txn: Txn) => {
      const result = await real.txn(txn);
      if (!lose) return result;
      lose = false;
      throw new WeftError('UNAVAILABLE', 'the store did not answer in time');
    },
  });
}

test('a claim whose answer was lost: taken away again, unless the volume is attached here (keepTrying), when it stays', async () => {
  const flaky = losingNextAnswer(store);
  const n4 = new AttachClaims(flaky, 'n4', inCluster, silent);
  n4.setLease((await store.grantLease(5)).id);
  try {
    flaky.loseNext();
    await expect(n4.claim('lost')).rejects.toThrow('the store did not answer in time');
    expect(await holder('lost')).toBe('{"node":"n4"}'); // it was put
    await waitFor(async () => (await holder('lost')) === undefined, 5000, 50);
    expect(n4.wants('lost')).toBe(false);

    flaky.loseNext();
    await expect(n4.claim('kept', true)).rejects.toThrow('the store did not answer in time');
    await new Promise((resolve) => setTimeout(resolve, 2500)); // past the retry
    expect(await holder('kept')).toBe('{"node":"n4"}');
    expect(n4.wants('kept')).toBe(true);
    await n4.release('kept');
    expect(await holder('kept')).toBeUndefined();
  } finally {
    n4.close();
  }
});

test('a claim whose lease was lost before its answer came is not held: UNAVAILABLE, and not wanted', async () => {
  let n5: AttachClaims | undefined;
  // Membership finds the lease lost while the claim's transaction is answered.
  const losingLease = Object.assign(Object.create(store) as ClusterStore, {
    txn: async (txn: Txn) => {
      const result = await store.txn(txn);
      n5?.setLease(null);
      return result;
    },
  });
  n5 = new AttachClaims(losingLease, 'n5', inCluster, silent);
  n5.setLease((await store.grantLease(5)).id);
  try {
    await expect(n5.claim('lost')).rejects.toMatchObject({ kind: 'UNAVAILABLE', message: 'node n5 lost its cluster lease while claiming volume lost; try again' });
    expect(n5.wants('lost')).toBe(false);
  } finally {
    n5.close();
  }
});

test("a claim value no weftd writes names no node (the primary's fence and the controller skip it)", () => {
  expect(claimHolder('{"node":"n1"}')).toBe('n1');
  for (const value of ['', 'n1', 'null', '{}', '{"node":7}', '{"node":"a/b"}', '[1]']) expect(claimHolder(value)).toBeUndefined();
});
