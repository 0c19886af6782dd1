// One cluster for the tests of a file: three weftd on a real etcd (test/chaos/cluster.ts) and a
// client of that etcd, started by the first test that asks, closed after the file's last test
// (with every weftd it started).

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
