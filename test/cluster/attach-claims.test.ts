// Claims on volumes of the cluster for attachments (attach-claims.ts): one node at a time, on the
// node's cluster lease, carried to a new lease. Two nodes' claims over one real embedded store.

import { AttachClaims, attachClaimKey } from '../../fabric/cluster/attach-claims';
import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import type { StoreLease } from '../../fabric/cluster/cluster-store';
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
  n1 = new AttachClaims(store, 'n1', silent);
  n2 = new AttachClaims(store, 'n2', silent);
  lease1 = await store.grantLease(3);
  n1.setLease(lease1.id);
  n2.setLease((await store.grantLease(3)).id);
});

afterAll(async () => {
  await store?.close();
  await cleanupAll();
});

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
  const alone = new AttachClaims(store, 'n3', silent);
  await expect(alone.claim('x')).rejects.toThrow('node n3 is not up in the cluster (its lease lapsed): volume x cannot be claimed now; try again');
  expect(await holder('x')).toBeUndefined();
});
