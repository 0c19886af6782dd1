// Three real weftd on a real etcd, wired so that a test can partition them: each node reaches etcd
// through its own proxy, and other nodes reach it (replication, forwarding, node-to-node API) through
// a proxy on its advertised address, 127.0.0.X, in front of its real ports on 127.0.0.1. Clients
// and the test itself use the real ports, so a cut is between nodes, or between a node and etcd, only.

import { WeftClient } from '../../fabric/api/client';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd, type EtcdCluster } from '../helpers/etcd';
import { freePort } from '../helpers/free-port';
import { TcpProxy } from '../helpers/tcp-proxy';
import { waitFor } from '../helpers/wait-for';
import { makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

const MiB = 1024 * 1024;
/** How long a control-plane answer may take before the node asked counts as unreachable. */
const ASK_TIMEOUT_MS = 3000;

export interface ChaosNode {
  id: string;
  weftd: WeftdHandle;
  api: WeftClient;
  /** This node's way to etcd. */
  etcdLink: TcpProxy;
  /** Other nodes' way to this node (its NBD and API ports). */
  peerLinks: TcpProxy[];
  up: boolean;
}

export class ChaosCluster {
  private constructor(readonly etcd: EtcdCluster, readonly nodes: ChaosNode[]) {}

  /** Starts etcd and `size` weftd (ids n1, n2...), node i advertising 127.0.0.(100+i), each with extraArgs besides. */
  static async start(size = 3, extraArgs: string[] = []): Promise<ChaosCluster> {
    const etcd = await startEtcd(1);
    const [etcdHost, etcdPort] = etcd.endpoints[0].split(':');
    const nodes: ChaosNode[] = [];
    const links: TcpProxy[] = [];
    try {
      for (let i = 1; i <= size; i++) {
        const id = `n${i}`;
        const advertise = `127.0.0.${100 + i}`;
        // Fixed ports, so that a restarted node is behind the same proxies.
        const nbdPort = await freePort();
        const apiPort = await freePort();
        const etcdLink = await TcpProxy.start({ host: '127.0.0.1', port: 0 }, { host: etcdHost, port: Number(etcdPort) });
        links.push(etcdLink);
        const peerLinks = await Promise.all([nbdPort, apiPort].map((port) => TcpProxy.start({ host: advertise, port }, { host: '127.0.0.1', port })));
        links.push(...peerLinks);
        const weftd = await startWeftd({
          pools: [`ssd:${makeTempDir(`weft-chaos-pool-${id}-`)}:${256 * MiB}`],
          extraArgs: ['--store', `etcd://127.0.0.1:${etcdLink.port}`, '--node-id', id, '--advertise', advertise, '--nbd-port', String(nbdPort), '--api-port', String(apiPort), ...extraArgs],
        });
        if (weftd.nbdPort !== nbdPort) throw new Error(`weftd ${id} listens on NBD port ${weftd.nbdPort}, not ${nbdPort}`);
        nodes.push({ id, weftd, api: new WeftClient(`127.0.0.1:${apiPort}`), etcdLink, peerLinks, up: true });
      }
    } catch (err) {
      // Nothing left listening (a proxy kept jest from exiting); the processes go with cleanupAll().
      for (const node of nodes) node.api.close();
      await Promise.all(links.map((link) => link.close()));
      throw err;
    }
    return new ChaosCluster(etcd, nodes);
  }

  node(id: string): ChaosNode {
    const found = this.nodes.find((n) => n.id === id);
    if (!found) throw new Error(`no node ${id}`);
    return found;
  }

  /** Nodes that run and reach etcd: their view of the store is current. */
  informed(): ChaosNode[] {
    return this.nodes.filter((n) => n.up && !n.etcdLink.isCut);
  }

  /** The volume as `via` shows it; undefined if it does not answer in time. */
  async show(via: ChaosNode, volume: string): Promise<VolumeInfo | undefined> {
    const timeout = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ASK_TIMEOUT_MS).unref());
    return Promise.race([via.api.getVolume(volume).catch(() => undefined), timeout]);
  }

  /**
   * Waits until every informed node shows the volume at the same epoch and primary, meeting
   * `condition`; returns what they showed. All, not any: a node just healed from a partition shows
   * its old view of the record for a moment (an old primary sees itself serving, every copy in sync).
   */
  async waitForVolume(volume: string, condition: (v: VolumeInfo) => boolean, timeoutMs: number, what: string): Promise<VolumeInfo> {
    let views: (VolumeInfo | undefined)[] = [];
    try {
      await waitFor(
        async () => {
          views = await Promise.all(this.informed().map((via) => this.show(via, volume)));
          const first = views[0]?.replication;
          return views.every((v) => v !== undefined && v.replication?.epoch === first?.epoch && v.replication?.primary === first?.primary && condition(v));
        },
        timeoutMs,
        200,
      );
    } catch {
      throw new Error(`volume ${volume}: not ${what} within ${timeoutMs} ms; last seen: ${JSON.stringify(views.map((v) => v?.replication))}`);
    }
    return views[0] as VolumeInfo;
  }

  /**
   * Waits until every informed node lists every running node as up: a node healed from a cut of
   * etcd registers again under a new lease a moment after the heal, and is down until it has.
   */
  async waitForNodesUp(timeoutMs: number): Promise<void> {
    const running = this.nodes.filter((n) => n.up).map((n) => n.id);
    const listsAllUp = async (via: ChaosNode): Promise<boolean> => {
      const listed = await via.api.listNodes().catch(() => []);
      return running.every((id) => listed.some((n) => n.id === id && n.state === 'up'));
    };
    try {
      await waitFor(async () => (await Promise.all(this.informed().map(listsAllUp))).every(Boolean), timeoutMs, 200);
    } catch {
      throw new Error(`nodes ${running.join(', ')}: not all up within ${timeoutMs} ms`);
    }
  }

  /** Creates volume `name` with its primary on n1 and waits until every copy is in sync. */
  async createOnN1(name: string, sizeBytes: number, replicas: number): Promise<VolumeInfo> {
    await this.nodes[0].api.createVolume({ name, sizeBytes, replicas, locality: 'n1' });
    const shown = await this.waitForVolume(name, allInSync, 30_000, 'in sync');
    if (shown.replication?.primary !== 'n1') throw new Error(`volume ${name}: its primary is ${shown.replication?.primary}, not n1`);
    return shown;
  }

  /**
   * Deletes the volume through its primary while the other nodes' connections to the primary are
   * reset (new ones held until the delete is done): a node that forwards a client to it, which the
   * primary refuses the delete for, has no connection to it at that moment.
   */
  async deleteUnseenByForwarders(primary: ChaosNode, volume: string): Promise<void> {
    for (const link of primary.peerLinks) {
      link.cut();
      link.reset();
    }
    try {
      // Again while the primary has not yet seen the connection close, or its store client does not
      // answer (a call it did not answer may have deleted it: then it is gone).
      let tries = 0;
      const deleted = () =>
        primary.api.deleteVolume(volume).then(
          () => true,
          (err: Error) => (/forwarded to its primary|did not answer/.test(err.message) ? false : tries > 0 && /is not in the cluster/.test(err.message) ? true : Promise.reject(err)),
        ).finally(() => tries++);
      await waitFor(deleted, 30_000, 200);
    } finally {
      for (const link of primary.peerLinks) link.heal();
    }
  }

  async kill9(node: ChaosNode): Promise<void> {
    node.up = false;
    await node.weftd.kill9();
  }

  async restart(node: ChaosNode): Promise<void> {
    await node.weftd.start();
    node.up = true;
  }

  /** Closes what this module opened that cleanupAll() (helpers/weftd) does not: proxies, API clients. */
  async close(): Promise<void> {
    for (const node of this.nodes) {
      node.api.close();
      await Promise.all([node.etcdLink, ...node.peerLinks].map((link) => link.close()));
    }
  }
}

/** Every copy in sync. */
export const allInSync = (v: VolumeInfo): boolean => v.replication !== undefined && v.replication.replicas.every((r) => r.state === 'in-sync');
