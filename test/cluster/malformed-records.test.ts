// Every node watches every volume record, primary lease and node registration, and reads creates' intents and its leftover keys: a value there that is none (a hand
// edit with etcdctl, a bug of another version) must not stop the nodes that read it, neither while
// they run nor at their next start. Two weftd on a real etcd; the bad values put with a client of it.

import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { qemuIo } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(120_000);

const startCluster = ownCluster();

test('malformed volume records, primary leases, node registrations, create intents, leftover, kept-snapshots and missed-snapshot-deletes keys are logged and ignored: the nodes keep serving, and start again', async () => {
  const cluster = await startCluster(2, 'v');
  const [n1, n2] = cluster.nodes;
  const store = await EtcdStore.open(cluster.etcd.endpoints);
  try {
    await store.put('volumes/bad', '{}');
    await store.put('volumes/worse', 'not json');
    await store.put('volume-leases/bad', '[1, 2]');
    await store.put('volume-leases/v-garbage', 'null');
    await store.put('nodes/n9', 'not json');
    await store.put('nodes/n8', JSON.stringify({ id: 'n7', address: '127.0.0.1', nbdPort: 1, apiPort: 2, pools: [] })); // another's id
    for (const node of [n1, n2]) {
      await waitFor(async () => (node.weftd.logs().match(/holds a malformed/g) ?? []).length >= 6, 10_000, 100);
      expect(node.weftd.logs()).toContain('"key":"volumes/worse"');
      expect(node.weftd.logs()).toContain('"key":"nodes/n9"');
      expect(node.weftd.logs()).toContain('"key":"nodes/n8"');
    }
    expect((await n1.weftd.weft(['node', 'list'])).code).toBe(0);
    // A create's intent that is none holds no name: the next create of it gives it up and goes on.
    await store.put('creates/w', 'not json');
    expect(await n1.weftd.weft(['volume', 'create', 'w', '--size', '16MiB', '--replicas', '2'])).toMatchObject({ code: 0 });
    expect(await store.get('creates/w')).toBeUndefined();
    // A leftover key that is none: the node drops it (it holds no copy of that name) all the same.
    await store.put('leftovers/n1/gone', 'not json');
    await waitFor(async () => (await store.get('leftovers/n1/gone')) === undefined, 10_000, 100);
    await qemuIo(n2.weftd.nbdUri('v'), ['write -P 0x3c 0 1M', 'flush']); // forwarded to n1, replicated to n2
    await qemuIo(n1.weftd.nbdUri('v'), ['read -P 0x3c 0 1M'], true);

    // At a start they are read with the rest, and ignored again; so are a kept-snapshots key and a
    // missed-snapshot-deletes key that are none.
    await store.put('kept-snapshots/k', 'not json');
    await store.put('missed-snapshot-deletes/v', 'not json');
    await n2.weftd.restart();
    await cluster.waitForVolume('v', (v) => v.replication?.replicas.every((r) => r.state === 'in-sync') === true, 30_000, 'in sync again');
    await qemuIo(n2.weftd.nbdUri('v'), ['read -P 0x3c 0 1M'], true);
    expect(n2.weftd.logs()).not.toMatch(/could not tidy the snapshots this node keeps|snapshot deletes this node missed|snapshots deleted while this node was away/);
    expect(await n1.weftd.weft(['snapshot', 'create', 'v', 's'])).toMatchObject({ code: 0 });
    expect(await n1.weftd.weft(['volume', 'create', 'k', '--size', '16MiB', '--replicas', '2'])).toMatchObject({ code: 0 });
    for (const key of ['kept-snapshots/k', 'missed-snapshot-deletes/v', 'volumes/bad', 'volumes/worse', 'volume-leases/bad', 'volume-leases/v-garbage', 'nodes/n9', 'nodes/n8']) await store.delete(key);
  } finally {
    await store.close();
  }
});
