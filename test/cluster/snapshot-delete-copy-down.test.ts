// A snapshot of a replicated volume deleted while a node with a copy is down: the delete goes through
// (that copy keeps it for now), and a retry of it (a CO whose answer was lost) is NOT_FOUND, which the
// CSI controller answers with OK, as the spec wants; before, it was UNAVAILABLE until the node was back.
// Once the node is back, its copy loses the snapshot too before it is in sync again: before, a
// failover to it brought the deleted snapshot back, and its name could not be taken again.

import { allInSync } from '../chaos/cluster';
import { weftJson } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';

jest.setTimeout(120_000);

const startCluster = ownCluster();

let cluster: Awaited<ReturnType<typeof startCluster>>;

test('a snapshot deleted while a copy is down: deleted, and deleting it again is NOT_FOUND, not UNAVAILABLE', async () => {
  cluster = await startCluster(2, 'v');
  const [n1, n2] = cluster.nodes;
  expect((await n1.weftd.weft(['snapshot', 'create', 'v', 's'])).code).toBe(0);
  await cluster.kill9(n2);
  expect(await n1.weftd.weft(['snapshot', 'delete', 'v@s'])).toMatchObject({ code: 0 });
  const again = await n1.weftd.weft(['snapshot', 'delete', 'v@s']);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/does not exist|not found/i);
  expect(again.stderr).not.toMatch(/UNAVAILABLE|cannot reach/i);
  expect(await weftJson<unknown[]>(n1.weftd, ['snapshot', 'list', 'v'])).toEqual([]);
});

test('the node back, its copy has lost it too: a failover to it does not bring it back, and the name can be taken again', async () => {
  const [n1, n2] = cluster.nodes;
  await cluster.restart(n2);
  await cluster.waitForVolume('v', allInSync, 60_000, 'in sync');
  await cluster.kill9(n1);
  await cluster.waitForVolume('v', (v) => v.replication?.primary === 'n2', 30_000, 'served by n2');
  expect(await weftJson<unknown[]>(n2.weftd, ['snapshot', 'list', 'v'])).toEqual([]);
  await cluster.restart(n1);
  await cluster.waitForVolume('v', allInSync, 60_000, 'in sync');
  expect(await n2.weftd.weft(['snapshot', 'create', 'v', 's'])).toMatchObject({ code: 0 });
  expect((await weftJson<{ name: string }[]>(n1.weftd, ['snapshot', 'list', 'v'])).map((s) => s.name)).toEqual(['s']);
});

// A copy whose node the deleting node could not reach (its API cut off), while the primary's
// replication to it went on: it stays in sync, and used to hold the snapshot (listed nowhere, its
// space kept) until it was the primary or resynced. The next snapshot of any name deletes it there.
// Meanwhile it cannot be cloned (it was, from that copy).
test('a copy in sync that missed a delete loses the snapshot at the next snapshot', async () => {
  const record = await cluster.waitForVolume('v', allInSync, 60_000, 'in sync');
  const primary = cluster.node(record.replication!.primary);
  const copy = cluster.nodes.find((n) => n !== primary)!;
  const held = async (node: typeof copy) => (await node.api.copySnapshots('v')).map((s) => s.name).sort();
  expect(await primary.weftd.weft(['snapshot', 'create', 'v', 'm'])).toMatchObject({ code: 0 });
  const api = copy.peerLinks[1];
  api.cut();
  try {
    expect(await primary.weftd.weft(['snapshot', 'delete', 'v@m'])).toMatchObject({ code: 0 });
  } finally {
    api.heal();
  }
  expect(await held(copy)).toContain('m'); // it missed the delete ...
  expect((await cluster.show(primary, 'v'))?.replication?.replicas.map((r) => r.state)).toEqual(['in-sync', 'in-sync']); // ... and is in sync
  // Deleted, it cannot be cloned, though that copy holds it still.
  for (const [node, args] of [[primary, ['--replicas', '1']], [copy, []]] as const) {
    const clone = await node.weftd.weft(['volume', 'create', 'c', '--from-snapshot', 'v@m', ...args]);
    expect(clone.code).toBe(1);
    expect(clone.stderr).toMatch(/snapshot v@m does not exist/);
  }
  expect(await primary.weftd.weft(['snapshot', 'create', 'v', 'n'])).toMatchObject({ code: 0 });
  expect(await held(copy)).toEqual(['n', 's']);
  expect(await held(primary)).toEqual(['n', 's']);
});
