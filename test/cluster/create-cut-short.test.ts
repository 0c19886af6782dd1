// A create of a replicated volume cut short by the death of the node running it (kill -9 once it
// made its own copy, as another node's is being made) must not hold the name for good
// (fabric/cluster/create-intent.ts). Its copies used to stay on their nodes, named by no record, so
// that every later create of the name failed there ("exists on node n2 as a volume of that node
// alone"), and a CSI CreateVolume retried it forever. Three weftd on a real etcd.

import { status } from '@grpc/grpc-js';
import { allInSync, ChaosCluster, type ChaosNode } from '../chaos/cluster';
import { WeftApiError } from '../../fabric/api/client';
import { waitFor } from '../helpers/wait-for';
import { SharedCluster } from '../helpers/shared-cluster';

jest.setTimeout(150_000);

const MiB = 1024 * 1024;

const shared = new SharedCluster();

/**
 * n1 creates name with 3 replicas, its own copy first, and is killed with -9 as the second node
 * marks its copy (create-intent.ts), just before that node makes it: n1's copy is made, the second
 * node's is on its way, the third node is never asked.
 */
async function cutShort(c: ChaosCluster, name: string): Promise<void> {
  const [n1] = c.nodes;
  let marks = 0;
  let killed: Promise<void> | undefined;
  const watch = await shared.store.watch(`create-copies/${name}/`, {}, (event) => {
    if (event.type === 'put' && ++marks === 2) killed = c.kill9(n1);
  });
  try {
    await expect(n1.api.createVolume({ name, sizeBytes: 16 * MiB, replicas: 3, locality: n1.id })).rejects.toThrow();
    await waitFor(async () => killed !== undefined, 5000, 20);
    await killed;
  } finally {
    await watch.close();
  }
}

/** Nothing of the create left in the store, and no node lists a volume of the name. */
async function leftNothing(c: ChaosCluster, name: string, via: ChaosNode[]): Promise<void> {
  const held = async () => (await Promise.all(via.map((n) => n.api.listVolumes()))).flat().filter((v) => v.name === name).length;
  const keys = async () => (await Promise.all(['creates/', 'create-copies/', 'leftovers/'].map((prefix) => shared.store.list(prefix)))).flat().length;
  await waitFor(async () => (await held()) === 0 && (await keys()) === 0, 30_000, 200);
}

test('a create whose node is killed midway: the next create of the name gives it up, and is made', async () => {
  await shared.start();
  const c = shared.cluster;
  const [n1, n2, n3] = c.nodes;
  await cutShort(c, 'cut');
  // The second node's copy, made for a create that no longer runs, shows there as a volume of its own.
  const orphan = async () => (await Promise.all([n2, n3].map((n) => n.api.listVolumes()))).flat().some((v) => v.name === 'cut' && v.replication === undefined);
  await waitFor(orphan, 5000, 50);

  // Until n1's lease has lapsed, its create is under way; then a create of the name by n3 gives it up.
  let made: unknown;
  let underWay = '';
  await waitFor(
    () =>
      n3.api.createVolume({ name: 'cut', sizeBytes: 32 * MiB, replicas: 2 }).then(
        (info) => ((made = info), true),
        (err: Error) => {
          if (!(err instanceof WeftApiError && err.code === status.ABORTED)) throw err;
          underWay = err.message;
          return false;
        },
      ),
    30_000,
    250,
  );
  expect(underWay).toContain('a create of volume cut is under way on node n1');
  expect(made).toMatchObject({ name: 'cut', sizeBytes: 32 * MiB });
  const shown = await c.waitForVolume('cut', allInSync, 30_000, 'in sync');
  expect(shown.replication!.replicas.map((r) => r.node).sort()).toEqual([n2.id, n3.id]);

  // n1's copy (it was down) goes when it is back: nothing of the first create is left anywhere.
  await c.restart(n1);
  await waitFor(async () => (await shared.store.list('leftovers/')).length === 0, 30_000, 200);
  expect(await shared.store.list('creates/')).toEqual([]);
  expect(await shared.store.list('create-copies/')).toEqual([]);
  expect((await n1.api.getVolume('cut')).replication?.replicas.map((r) => r.node).sort()).toEqual([n2.id, n3.id]);
  await n3.api.deleteVolume('cut');
  await leftNothing(c, 'cut', c.nodes);
});

test('a create whose node is killed midway and never asked again: the node gives it up when it is back, and the name is free', async () => {
  const c = shared.cluster;
  const [n1] = c.nodes;
  await c.waitForNodesUp(30_000);
  await cutShort(c, 'again');
  await c.restart(n1);
  await leftNothing(c, 'again', c.nodes);
  await n1.api.createVolume({ name: 'again', sizeBytes: 16 * MiB, replicas: 3, locality: n1.id });
  await c.waitForVolume('again', allInSync, 30_000, 'in sync');
});

test('a copy asked for by a create of an earlier version (it writes no intent, and asks for no mark) is made as before; a marked one without its intent is refused', async () => {
  const n2 = shared.cluster.node('n2');
  await n2.api.createCopy('older', 16 * MiB, 'ssd', undefined, { id: 'an-older-create', marked: false });
  expect(await shared.store.list('create-copies/')).toEqual([]);
  await expect(n2.api.createCopy('newer', 16 * MiB, 'ssd', undefined, { id: 'a-create-given-up', marked: true })).rejects.toMatchObject({
    code: status.ABORTED,
    message: expect.stringContaining('was given up'),
  });
  expect((await n2.api.listVolumes()).map((v) => v.name)).not.toContain('newer');
  await n2.api.deleteCopy('older');
});

test("a copy that a create under way made is not deleted as the node's own volume: refused, the copy kept", async () => {
  const n2 = shared.cluster.node('n2');
  // A create by n1 under way (its intent written, as beginCreate does), which has made its copy on n2.
  const alive = await shared.store.get('alive/n1');
  await shared.store.put('creates/busy', JSON.stringify({ createId: 'a-create-under-way', node: 'n1', aliveRevision: alive!.createRevision }));
  await n2.api.createCopy('busy', 16 * MiB, 'ssd', undefined, { id: 'a-create-under-way', marked: true });
  const deleted = await n2.weftd.weft(['volume', 'delete', 'busy']);
  expect(deleted.code).toBe(1);
  expect(deleted.stderr).toMatch(/a create of volume busy is under way on node n1/);
  expect((await n2.api.listVolumes()).map((v) => v.name)).toContain('busy');
  await shared.store.delete('creates/busy');
  await shared.store.deletePrefix('create-copies/busy/');
  await n2.api.deleteCopy('busy');
});

test('a create whose node is killed midway and then forgotten (it will not come back): its copies on the other nodes go, and the name is free', async () => {
  const c = shared.cluster;
  const [n1, n2, n3] = c.nodes;
  await c.waitForNodesUp(30_000);
  await n2.api.deleteVolume('again'); // a volume with a copy on n1 would keep it from being forgotten
  await cutShort(c, 'gone');
  await waitFor(async () => (await shared.store.get('alive/n1')) === undefined, 30_000, 200);
  const forgot = await n2.weftd.weft(['node', 'forget', n1.id]);
  expect(forgot.stderr).toBe('');
  expect(forgot.code).toBe(0);
  await leftNothing(c, 'gone', [n2, n3]);
  await n2.api.createVolume({ name: 'gone', sizeBytes: 16 * MiB, replicas: 2 });
  await c.waitForVolume('gone', allInSync, 30_000, 'in sync');
});
