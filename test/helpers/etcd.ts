// Starts a real etcd (Debian's etcd-server, v3.4) for tests: one member or a cluster of several, on
// free loopback ports, data in temp dirs. Members can be killed and restarted; cleanupAll() (weftd.ts)
// kills whatever still runs and removes the dirs.

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from './free-port';
import { waitFor } from './wait-for';
import { killAndWait, makeTempDir, track } from './weftd';

export const ETCD_BIN = '/usr/bin/etcd';
const HEALTHY_TIMEOUT_MS = 20_000;
/** Kept of each member's log, for the error when it does not come up. */
const LOG_TAIL_CHARS = 4000;

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  child?: ChildProcess;
  log: string;
}

export class EtcdCluster {
  constructor(private readonly members: Member[]) {}

  /** "127.0.0.1:PORT" of every member, as --store takes them. */
  get endpoints(): string[] {
    return this.members.map((member) => `127.0.0.1:${member.clientPort}`);
  }

  /** The --store value for this cluster. */
  get storeSpec(): string {
    return `etcd://${this.endpoints.join(',')}`;
  }

  /** SIGKILL one member, as a crash would. */
  async kill9(index: number): Promise<void> {
    const { child } = this.members[index];
    if (child) await killAndWait(child, 'SIGKILL');
  }

  /** SIGSTOP (frozen: connections stay open, nothing answers) or SIGCONT one member. */
  signal(index: number, signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.members[index].child?.kill(signal);
  }

  /** The index of the member that is the leader now (etcd's maintenance status, through its JSON gateway). */
  async leaderIndex(): Promise<number> {
    const statuses = await Promise.all(
      this.members.map(async (member) => {
        const response = await fetch(`http://127.0.0.1:${member.clientPort}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) });
        return (await response.json()) as { header: { member_id: string }; leader: string };
      }),
    );
    const index = statuses.findIndex((status) => status.header.member_id === status.leader);
    if (index < 0) throw new Error('no etcd member says it is the leader');
    return index;
  }

  /** Starts a member again on its data dir; resolves once it reports healthy. */
  async restart(index: number): Promise<void> {
    this.launch(this.members[index]);
    await this.healthy([this.members[index]]);
  }

  /** Starts every member; resolves once all are healthy. */
  async start(): Promise<void> {
    for (const member of this.members) this.launch(member);
    await this.healthy();
  }

  private launch(member: Member): void {
    const url = (port: number) => `http://127.0.0.1:${port}`;
    const cluster = this.members.map((other) => `${other.name}=${url(other.peerPort)}`).join(',');
    const args = [
      '--name', member.name, '--data-dir', member.dataDir,
      '--listen-client-urls', url(member.clientPort), '--advertise-client-urls', url(member.clientPort),
      '--listen-peer-urls', url(member.peerPort), '--initial-advertise-peer-urls', url(member.peerPort),
      '--initial-cluster', cluster, '--initial-cluster-token', `weft-test-${this.members[0].peerPort}`,
      // Fast elections, so that a killed leader is replaced in under a second.
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--logger', 'zap', '--log-level', 'warn',
    ];
    const child = track(spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const record = (chunk: Buffer) => (member.log = (member.log + chunk.toString()).slice(-LOG_TAIL_CHARS));
    child.stdout?.on('data', record);
    child.stderr?.on('data', record);
    member.child = child;
  }

  /**
   * Waits until each running member answers GET /health with "health":"true": it has a leader.
   * After the leader was killed, calls sent before a new one is elected may time out.
   */
  async healthy(members = this.members.filter((member) => member.child?.exitCode === null && member.child.signalCode === null)): Promise<void> {
    const isHealthy = async (member: Member) => {
      try {
        const response = await fetch(`http://127.0.0.1:${member.clientPort}/health`, { signal: AbortSignal.timeout(1000) });
        return ((await response.json()) as { health?: string }).health === 'true';
      } catch {
        return false;
      }
    };
    try {
      await waitFor(async () => (await Promise.all(members.map(isHealthy))).every(Boolean), HEALTHY_TIMEOUT_MS, 100);
    } catch {
      const logs = members.map((member) => `--- ${member.name}:\n${member.log}`).join('\n');
      throw new Error(`etcd was not healthy within ${HEALTHY_TIMEOUT_MS} ms:\n${logs}`);
    }
  }
}

/** Starts an etcd of `size` members and waits until every one is healthy. */
export async function startEtcd(size = 1): Promise<EtcdCluster> {
  const root = makeTempDir('weft-etcd-');
  const ports = new Set<number>();
  while (ports.size < 2 * size) ports.add(await freePort());
  const [...free] = ports;
  const members = Array.from({ length: size }, (_, index): Member => {
    const name = `etcd${index}`;
    return { name, clientPort: free[2 * index], peerPort: free[2 * index + 1], dataDir: path.join(root, name), log: '' };
  });
  const cluster = new EtcdCluster(members);
  await cluster.start();
  return cluster;
}
