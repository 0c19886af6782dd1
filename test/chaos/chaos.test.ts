// The history checker, briefly, as CI runs it (the long seeded run is `npm run chaos`, run.ts): three
// weftd on a real etcd, clients writing stamped blocks with FUA through every node, two kills of the
// primary, one partition of each kind (the primary cut from etcd is a third failover) and an etcd
// outage (every node cut from etcd past its lease); every
// acknowledged write must read back. The seed is
// random unless WEFT_CHAOS_SEED is set; a failure names it, and the replay command is in run.ts.

import { cleanupAll } from '../helpers/weftd';
import { runChaos, summary } from './run';

jest.setTimeout(300_000);

afterAll(cleanupAll);

test('no acknowledged write is lost across failovers and partitions', async () => {
  const seed = Number(process.env.WEFT_CHAOS_SEED ?? Date.now() % 1_000_000);
  const result = await runChaos({ seed, failovers: 2, partitions: 1, replicaKills: 0, log: () => undefined });
  console.log(summary(result));
  expect(result.faults).toEqual({ 'kill-primary': 2, 'kill-replica': 0, 'cut-primary-etcd': 1, 'cut-primary-replica': 1, 'cut-replica-etcd': 1, 'etcd-outage': 1 });
  // The kills of the primary and the primary cut from etcd each moved the volume to another primary.
  expect(result.failovers).toBe(3);
  expect(result.checks).toBe(12);
  expect(result.snapshots.checks).toBe(6);
  expect(result.snapshots.made).toBeGreaterThan(6);
  expect(result.ackedWrites).toBeGreaterThan(1000);
});
