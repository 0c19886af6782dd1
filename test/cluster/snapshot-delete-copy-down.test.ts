// A snapshot of a replicated volume deleted while a node with a copy is down: the delete goes through
// (that copy keeps it, logged), and a retry of it (a CO whose answer was lost) is NOT_FOUND, which the
// CSI controller answers with OK, as the spec wants; before, it was UNAVAILABLE until the node was back.

import { weftJson } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';

jest.setTimeout(120_000);

const startCluster = ownCluster();

test('a snapshot deleted while a copy is down: deleted, and deleting it again is NOT_FOUND, not UNAVAILABLE', async () => {
  const cluster = await startCluster(2, 'v');
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
