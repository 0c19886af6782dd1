// The seeded chaos run (issue 9, the history checker): three weftd on a real etcd serve a volume with
// 3 replicas while clients write stamped blocks with FUA (writers.ts) and a seeded loop injects
// faults: kill -9 of the primary (a failover), kill -9 of a replica, the primary cut from etcd (a
// failover too), the primary cut from one replica, a replica cut from etcd, every node cut from
// etcd (an outage past the node leases: the primary puts its lease back, or a member takes over)
// (cluster.ts has the proxies). After each fault, and again once every copy is back in sync, the
// writers pause and every block written so far is read back through a node that reaches etcd and
// checked (history.ts): zero lost. Snapshots are taken meanwhile, and once in sync the copies must
// agree on them (snapshotter.ts). A failure names its seed; the same seed replays the same schedule
// (not the same timings). The weftd logs of a failure, and (from this script) of a failover slower
// than 5 s, are saved.
//
//   npm run chaos -- [--seeds N] [--seed S] [--failovers K] [--partitions P] [--replica-kills R]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NbdClient } from '../../fabric/nbd/client';
import { Prng } from '../helpers/prng';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';
import { allInSync, ChaosCluster, type ChaosNode } from './cluster';
import { BLOCK_BYTES, History, type Violation } from './history';
import { Snapshotter } from './snapshotter';
import { Writers } from './writers';

const MiB = 1024 * 1024;
const VOLUME = 'chaos';
const FAILOVER_TIMEOUT_MS = 30_000;
const RESYNC_TIMEOUT_MS = 120_000;
const READ_CHUNK_BYTES = 256 * 1024;
/** Issue 9's target from kill -9 of the primary to the first write acknowledged by the new one. */
const FAILOVER_TARGET_MS = 5000;

type Fault = 'kill-primary' | 'kill-replica' | 'cut-primary-etcd' | 'cut-primary-replica' | 'cut-replica-etcd' | 'etcd-outage';

export interface ChaosOptions {
  seed: number;
  /** kill -9 of the primary, this many times. */
  failovers: number;
  /** Each kind of partition (and the etcd outage), this many times. */
  partitions: number;
  /** kill -9 of a replica that is not the primary, this many times. */
  replicaKills: number;
  clients?: number;
  /** Blocks of 4 KiB written (the first ones of the volume). */
  blocks?: number;
  /** Writes in flight per client. */
  depth?: number;
  log?: (line: string) => void;
  /** Saves the weftd logs of a failover slower than the 5 s target, as a failure's are. */
  keepSlowFailoverLogs?: boolean;
}

export interface ChaosResult {
  seed: number;
  /** Primary changes seen: kills of the primary and primaries cut from etcd. */
  failovers: number;
  faults: Record<Fault, number>;
  /** Read-back checks, each of every block written so far. */
  checks: number;
  ackedWrites: number;
  failedWrites: number;
  /** From each failover's fault to the first write acknowledged after it. */
  failoverMs: number[];
  /** Snapshots taken meanwhile (snapshotter.ts): acknowledged, failed (cut short or refused), and checks that the copies agree. */
  snapshots: { made: number; failed: number; checks: number };
  violation?: Violation & { when: string };
}

export class LostWriteError extends Error {}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const prng = new Prng(options.seed);
  const blocks = options.blocks ?? 4096;
  const schedule = prng.shuffle<Fault>([
    ...repeat<Fault>('kill-primary', options.failovers),
    ...repeat<Fault>('kill-replica', options.replicaKills),
    ...repeat<Fault>('cut-primary-etcd', options.partitions),
    ...repeat<Fault>('cut-primary-replica', options.partitions),
    ...repeat<Fault>('cut-replica-etcd', options.partitions),
    ...repeat<Fault>('etcd-outage', options.partitions),
  ]);
  const result: ChaosResult = {
    seed: options.seed, failovers: 0, checks: 0, ackedWrites: 0, failedWrites: 0, failoverMs: [], snapshots: { made: 0, failed: 0, checks: 0 },
    faults: { 'kill-primary': 0, 'kill-replica': 0, 'cut-primary-etcd': 0, 'cut-primary-replica': 0, 'cut-replica-etcd': 0, 'etcd-outage': 0 },
  };
  const history = new History();
  const cluster = await ChaosCluster.start();
  const writers = new Writers(cluster, history, { clients: options.clients ?? 3, blocks, depth: options.depth ?? 4, volume: VOLUME, seed: options.seed });
  const snapshots = new Snapshotter(cluster, VOLUME, options.seed);

  /** Pauses the writers and reads every written block back through an informed node. */
  const check = async (when: string) => {
    await writers.pause();
    try {
      // In an etcd outage no node is informed: any node that runs serves.
      const via = prng.pick(cluster.informed().length > 0 ? cluster.informed() : cluster.nodes.filter((n) => n.up));
      const violation = await readBack(via, blocks, history);
      result.checks++;
      result.ackedWrites = history.acked;
      result.failedWrites = history.failed;
      if (violation) {
        result.violation = { ...violation, when };
        throw new LostWriteError(`seed ${options.seed}: lost write ${when}, read through ${via.id}: block ${violation.block} holds ${violation.found}; its writes: ${violation.history}`);
      }
    } finally {
      writers.resume();
    }
  };
  const inSync = () => cluster.waitForVolume(VOLUME, allInSync, RESYNC_TIMEOUT_MS, 'in sync');
  /** With every copy in sync: the copies agree on the snapshots (snapshotter.ts). */
  const checkSnapshots = async (when: string) => {
    await snapshots.pause();
    try {
      const primary = cluster.node((await inSync()).replication!.primary);
      const violation = await snapshots.check(primary);
      result.snapshots = { made: snapshots.made, failed: snapshots.failed, checks: result.snapshots.checks + 1 };
      if (violation) throw new Error(`snapshots ${when}: ${violation}`);
    } finally {
      snapshots.resume();
    }
  };
  /** Waits for a primary other than `old` at a higher epoch, and for a write acknowledged after `since`. */
  const failedOver = async (old: string, epoch: number, since: number) => {
    const after = await cluster.waitForVolume(VOLUME, (v) => v.replication!.epoch > epoch && v.replication!.primary !== old, FAILOVER_TIMEOUT_MS, `failed over from ${old}`);
    await waitFor(() => writers.lastAckAt > since, FAILOVER_TIMEOUT_MS, 20);
    result.failovers++;
    result.failoverMs.push(writers.lastAckAt - since);
    log(`  ${after.replication!.primary} primary at epoch ${after.replication!.epoch}; first write acknowledged ${writers.lastAckAt - since} ms after the fault`);
    if (options.keepSlowFailoverLogs && writers.lastAckAt - since > FAILOVER_TARGET_MS) saveLogs(cluster, options.seed, log);
    return after;
  };

  try {
    await cluster.nodes[0].api.createVolume({ name: VOLUME, sizeBytes: 64 * MiB, replicas: 3 });
    await inSync();
    writers.start();
    snapshots.start();
    for (const [i, fault] of schedule.entries()) {
      await sleep(prng.int(500, 2000)); // writes flow before each fault
      const before = (await inSync()).replication!;
      const primary = cluster.node(before.primary);
      const replica = prng.pick(cluster.nodes.filter((n) => n !== primary));
      const stepStarted = Date.now();
      log(`seed ${options.seed} step ${i + 1}/${schedule.length}: ${fault} (primary ${primary.id} epoch ${before.epoch}${fault.includes('replica') ? `, replica ${replica.id}` : ''})`);
      switch (fault) {
        case 'kill-primary':
        case 'kill-replica': {
          const victim = fault === 'kill-primary' ? primary : replica;
          await cluster.kill9(victim);
          const killedAt = Date.now();
          if (victim === primary) await failedOver(primary.id, before.epoch, killedAt);
          else await sleep(prng.int(1000, 4000));
          await check(`after ${fault} ${victim.id}`);
          await sleep(prng.int(0, 3000));
          await cluster.restart(victim);
          break;
        }
        case 'cut-primary-etcd': {
          primary.etcdLink.cut();
          await failedOver(primary.id, before.epoch, Date.now());
          await check(`with ${primary.id} (old primary) cut from etcd`);
          await sleep(prng.int(0, 3000));
          primary.etcdLink.heal();
          break;
        }
        case 'cut-primary-replica': {
          // Every peer's way to the replica: the primary's replication to it stops (its way out stays).
          for (const link of replica.peerLinks) link.cut();
          await cluster.waitForVolume(VOLUME, (v) => v.replication!.replicas.some((r) => r.node === replica.id && r.state !== 'in-sync'), FAILOVER_TIMEOUT_MS, `without ${replica.id} in sync`);
          await check(`with ${replica.id} cut from the primary ${primary.id}`);
          await sleep(prng.int(0, 3000));
          for (const link of replica.peerLinks) link.heal();
          break;
        }
        case 'cut-replica-etcd': {
          replica.etcdLink.cut();
          await sleep(prng.int(4000, 6000)); // beyond its node lease (3 s)
          await check(`with ${replica.id} (replica) cut from etcd`);
          replica.etcdLink.heal();
          break;
        }
        case 'etcd-outage': {
          // Every node cut from etcd beyond its node lease: etcd lets every lease lapse. The primary
          // serves on, and puts its lease back once it has a new one (a member may take over first).
          for (const node of cluster.nodes) node.etcdLink.cut();
          await sleep(prng.int(4000, 6000));
          await check('with every node cut from etcd');
          for (const node of cluster.nodes) node.etcdLink.heal();
          const after = (await inSync()).replication!;
          log(`  after the outage: ${after.primary} primary at epoch ${after.epoch} (${after.epoch === before.epoch ? 'kept' : 'taken over'})`);
          break;
        }
      }
      result.faults[fault]++;
      await inSync();
      await check(`after ${fault}, back in sync`);
      await checkSnapshots(`after ${fault}, back in sync`);
      log(`  back in sync and checked after ${Date.now() - stepStarted} ms (${history.acked} writes acknowledged so far)`);
    }
  } catch (err) {
    if (!(err instanceof LostWriteError)) (err as Error).message = `seed ${options.seed}: ${(err as Error).message}`;
    saveLogs(cluster, options.seed, log);
    throw err;
  } finally {
    await Promise.all([writers.stop(), snapshots.stop()]);
    await cluster.close();
    for (const [why, n] of snapshots.failures) log(`  snapshots failed ${n}x: ${why}`);
  }
  return result;
}

/** Reads blocks [0, blocks) through `via` and checks each written one; the first violation found. */
async function readBack(via: ChaosNode, blocks: number, history: History): Promise<Violation | undefined> {
  const nbd = await NbdClient.connect({ host: '127.0.0.1', port: via.weftd.nbdPort, exportName: VOLUME, timeoutMs: 45_000 });
  try {
    const written = new Set(history.blocks());
    for (let offset = 0; offset < blocks * BLOCK_BYTES; offset += READ_CHUNK_BYTES) {
      const data = await nbd.read(offset, Math.min(READ_CHUNK_BYTES, blocks * BLOCK_BYTES - offset));
      for (let at = 0; at < data.length; at += BLOCK_BYTES) {
        const block = (offset + at) / BLOCK_BYTES;
        if (!written.has(block)) continue;
        const violation = history.check(block, data.subarray(at, at + BLOCK_BYTES));
        if (violation) return violation;
      }
    }
    return undefined;
  } finally {
    nbd.close();
  }
}

function saveLogs(cluster: ChaosCluster, seed: number, log: (line: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `weft-chaos-seed-${seed}-`));
  for (const node of cluster.nodes) fs.writeFileSync(path.join(dir, `${node.id}.log`), node.weftd.logs());
  log(`weftd logs of seed ${seed}: ${dir}`);
}

function repeat<T>(item: T, times: number): T[] {
  return Array.from({ length: times }, () => item);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function summary(r: ChaosResult): string {
  const sorted = [...r.failoverMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const faults = Object.entries(r.faults).map(([kind, n]) => `${kind} ${n}`).join(', ');
  return (
    `seed ${r.seed}: ${r.failovers} failovers (fault to first acknowledged write: median ${median} ms, max ${sorted[sorted.length - 1] ?? 0} ms); ` +
    `faults: ${faults}; ${r.checks} read-back checks; ${r.ackedWrites} acknowledged writes checked (${r.failedWrites} failed, allowed either way); ` +
    `snapshots: ${r.snapshots.made} made, ${r.snapshots.failed} failed or cut short, the copies agreed at ${r.snapshots.checks} checks; ` +
    `lost ${r.violation ? 1 : 0}`
  );
}

/** `node dist/test/chaos/run.js --seeds N [--seed S] [--failovers K] [--partitions P] [--replica-kills R]` */
async function main(argv: string[]): Promise<number> {
  const flag = (name: string, fallback: number) => {
    const at = argv.indexOf(`--${name}`);
    const value = at < 0 ? fallback : Number(argv[at + 1]);
    if (!Number.isInteger(value) || value < 0) throw new Error(`--${name}: expected a whole number, got ${argv[at + 1]}`);
    return value;
  };
  const seeds = flag('seeds', 1);
  const first = flag('seed', Date.now() % 1_000_000);
  const failovers = flag('failovers', 20);
  const partitions = flag('partitions', 2);
  const replicaKills = flag('replica-kills', Math.round(failovers / 4));
  const totals = { failovers: 0, partitions: 0, acked: 0 };
  for (let seed = first; seed < first + seeds; seed++) {
    try {
      const r = await runChaos({ seed, failovers, partitions, replicaKills, keepSlowFailoverLogs: true });
      console.log(summary(r));
      totals.failovers += r.failovers;
      totals.partitions += r.faults['cut-primary-etcd'] + r.faults['cut-primary-replica'] + r.faults['cut-replica-etcd'] + r.faults['etcd-outage'];
      totals.acked += r.ackedWrites;
    } catch (err) {
      console.error(`FAILED seed ${seed} (replay: npm run chaos -- --seeds 1 --seed ${seed} --failovers ${failovers} --partitions ${partitions} --replica-kills ${replicaKills}):\n${(err as Error).message}`);
      return 1;
    } finally {
      await cleanupAll();
    }
  }
  console.log(`all ${seeds} seeds: ${totals.failovers} failovers, ${totals.partitions} partitions, ${totals.acked} acknowledged writes checked, lost 0`);
  return 0;
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => process.exit(code));
}
