// One cluster for the tests of a file: three weftd on a real etcd (test/chaos/cluster.ts) and a
// client of that etcd, started by the first test that asks, closed after the file's last test
// (with every weftd it started). Or a cluster of the size a test asks for (ownCluster).

import { ChaosCluster } from '../chaos/cluster';
import { EtcdStore } from '../../fabric/cluster/etcd-store';
import { cleanupAll } from './weftd';

export class SharedCluster {
  private started: { cluster: ChaosCluster; store: EtcdStore } | undefined;

  /** Made at a test file's top level: it registers its own afterAll. */
  constructor() {
    afterAll(async () => {
      await this.started?.store.close();
      await this.started?.cluster.close();
      await cleanupAll();
    });
  }

  async start(): Promise<void> {
    const cluster = await ChaosCluster.start(3);
    this.started = { cluster, store: await EtcdStore.open(cluster.etcd.endpoints) };
  }

  get cluster(): ChaosCluster {
    return this.running().cluster;
  }

  get store(): EtcdStore {
    return this.running().store;
  }

  private running(): { cluster: ChaosCluster; store: EtcdStore } {
    if (!this.started) throw new Error('the shared cluster has not been started (start() in the first test)');
    return this.started;
  }
}

/**
 * Made at a test file's top level: a function that starts a cluster of `size` nodes, closed (with
 * every weftd started) after the file's last test; with `volume`, a volume of 16 MiB of that name
 * is made in it, a copy on every node and its primary on n1, and waited for in sync.
 */
export function ownCluster(): (size: number, volume?: string) => Promise<ChaosCluster> {
  let cluster: ChaosCluster | undefined;
  afterAll(async () => {
    await cluster?.close();
    await cleanupAll();
  });
  return async (size, volume) => {
    cluster = await ChaosCluster.start(size);
    if (volume) await cluster.createOnN1(volume, 16 * 1024 * 1024, size);
    return cluster;
  };
}
