// Measures what synchronous replication costs: fio against a primary's NBD export of one volume,
// written through the replication layer to one remote replica (a real weftd on this machine), and
// the same volume served without it, jobs interleaved. The primary (a LocalEngine and our NBD
// server) runs in this process; fio and the replica in their own. Then the resync part
// (replication-resync.ts). BENCH_REPLICATION=cost or =resync runs one part only, BENCH_JOB=4k (any
// part of a job's name) only the jobs it names.

import { spawn } from 'node:child_process';
import path from 'node:path';
import pino from 'pino';
import { NbdClient } from '../../fabric/nbd/client';
import { NbdServer } from '../../fabric/nbd/server';
import type { RemoteReplica } from '../../fabric/replication/remote-replica';
import { ReplicatedDevice } from '../../fabric/replication/replicated-device';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ReplicaNode } from '../helpers/replica-node';
import { freePort } from '../helpers/free-port';
import { cleanupAll, makeTempDir, track } from '../helpers/weftd';
import { openPrimaryVolume } from '../replication/primary-volume';
import { ALL_JOBS, fill, runJob, type Job } from './fio';
import { benchMain, cpuSeconds, median, positiveInteger, saveResults } from './harness';
import { resyncBench } from './replication-resync';

const SECONDS = positiveInteger('BENCH_SECONDS', 10);
const REPEAT = positiveInteger('BENCH_REPEAT', 1);
const VOLUME_BYTES = 1024 ** 3;
/** BENCH_JOB: runs only the jobs whose name contains it (e.g. "4k"). */
const JOBS = ALL_JOBS.filter((job) => job.rw.endsWith('write') && job.name.includes(process.env.BENCH_JOB ?? ''));
const EXPORTS = ['local only', '1 remote replica', 'null replica'] as const;
const PARTS = process.env.BENCH_REPLICATION ?? 'cost,resync';

const stops: (() => Promise<void> | void)[] = [];

async function main(dir: string): Promise<void> {
  console.error(`bench: replication, ${JOBS.length} jobs x ${REPEAT} x ${EXPORTS.length} exports, ${SECONDS} s each, in ${dir}`);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  stops.push(async () => void (await replica.node.stop())); // lets weftd write a CPU profile (test/helpers' WEFTD_NODE_FLAGS)
  stops.push(() => replica.closeClients());
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  stops.push(() => engine.close());
  const replicated = await ReplicatedDevice.open(local, [replica.remote(1, 10_000)], new MemoryInSyncSet(['r1']));
  stops.push(() => replicated.close());
  const nullReplica = await ReplicatedDevice.open(local, [await startNullReplica(VOLUME_BYTES)], new MemoryInSyncSet(['null']));
  stops.push(() => nullReplica.close());
  // The resync part swaps the device of its own export between rounds.
  const devices = new Map<string, BlockDevice>([[EXPORTS[0], local], [EXPORTS[1], replicated], [EXPORTS[2], nullReplica], ['resync', local]]);
  const server = new NbdServer({
    logger: pino({ level: 'silent' }),
    provider: {
      names: () => [...devices.keys()],
      open: (name) => {
        const device = devices.get(name);
        return device && { device, close: () => undefined };
      },
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  stops.push(() => server.close());
  const uri = (name: string) => `nbd://127.0.0.1:${port}/${encodeURIComponent(name)}`;
  // Filling through the replicated export fills both copies, so that every job overwrites data.
  console.error(`  fill (replicated): ${Math.round(await fill(uri('1 remote replica'), path.join(dir, 'fill.json')))} MB/s`);

  const markdown: string[] = [];
  const json: Record<string, object> = {};
  if (PARTS.includes('cost')) {
    const cost = await costBench(uri, dir, () => cpuSeconds(replica.node.pid));
    markdown.push(cost.markdown);
    json.cost = cost.json;
  }
  if (PARTS.includes('resync')) {
    const serve = (device: BlockDevice) => void devices.set('resync', device);
    const resync = await resyncBench({ local, remote: replica.remote(1, 10_000), replicaCpuSeconds: () => cpuSeconds(replica.node.pid), serve, uri: uri('resync'), dir, seconds: SECONDS, repeat: REPEAT });
    markdown.push(resync.markdown);
    json.resync = resync.json;
  }
  console.log(markdown.join('\n\n'));
  console.error(`bench: results in ${saveResults('replication-', markdown.join('\n\n'), { seconds: SECONDS, repeat: REPEAT, results: json })}.{md,json}`);
}

/** A replica that stores nothing (nbdkit null), reached as a weftd replica is: over NBD on loopback. */
async function startNullReplica(sizeBytes: number): Promise<RemoteReplica> {
  const port = await freePort();
  track(spawn('nbdkit', ['--foreground', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), 'null', `size=${sizeBytes}`], { stdio: 'ignore' }));
  const connect = () => NbdClient.connect({ host: '127.0.0.1', port, exportName: '', timeoutMs: 10_000 });
  for (let waitedMs = 0; ; waitedMs += 100) {
    try {
      (await connect()).close();
      return { id: 'null', connect };
    } catch (err) {
      if (waitedMs > 10_000) throw new Error(`nbdkit null did not start: ${(err as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * fio against the volume served with and without replication, interleaved, with the CPU time this
 * process (the primary) and the replica's weftd used per GiB written. fio's figure leaves out its
 * 1 s ramp, the CPU time does not: the bytes are taken as the figure's rate over the ramp too.
 */
async function costBench(uri: (name: string) => string, dir: string, replicaCpuSeconds: () => number): Promise<{ markdown: string; json: object }> {
  const rows: string[] = [];
  const json: Record<string, object> = {};
  for (const job of JOBS) {
    const samples = new Map<string, number[]>(EXPORTS.map((name) => [name, []]));
    const primaryCpu = new Map<string, number[]>(EXPORTS.map((name) => [name, []]));
    const replicaCpu: number[] = [];
    for (let repetition = 1; repetition <= REPEAT; repetition++) {
      for (const name of EXPORTS) {
        const [primaryBefore, replicaBefore] = [process.cpuUsage(), replicaCpuSeconds()];
        const value = await runJob(job, uri(name), SECONDS, path.join(dir, `${job.rw}.json`));
        const used = process.cpuUsage(primaryBefore);
        const gib = (value * (job.unit === 'IOPS' ? blockBytes(job) : 1e6) * (SECONDS + 1)) / 2 ** 30;
        const primary = (used.user + used.system) / 1e6 / gib;
        samples.get(name)?.push(value);
        primaryCpu.get(name)?.push(primary);
        let cpuNote = `primary ${primary.toFixed(2)}`;
        if (name === '1 remote replica') {
          const replica = (replicaCpuSeconds() - replicaBefore) / gib;
          replicaCpu.push(replica);
          cpuNote += `, replica ${replica.toFixed(2)}`;
        }
        console.error(`  ${job.name} #${repetition} ${name}: ${Math.round(value)} ${job.unit}, CPU s per GiB: ${cpuNote}`);
      }
    }
    const [plain, remote, free] = EXPORTS.map((name) => median(samples.get(name) ?? []));
    const [cpuLocal, cpuReplicated, cpuNull] = EXPORTS.map((name) => median(primaryCpu.get(name) ?? []));
    const cpuMedians = { primaryLocal: cpuLocal, primary: cpuReplicated, primaryNullReplica: cpuNull, replica: median(replicaCpu) };
    json[job.name] = { [EXPORTS[0]]: plain, [EXPORTS[1]]: remote, [EXPORTS[2]]: free, cpuSecondsPerGiB: cpuMedians };
    const cells = [Math.round(plain), Math.round(remote), (remote / plain).toFixed(2), Math.round(free), (free / plain).toFixed(2)];
    const cpuCells = [cpuLocal, cpuReplicated, cpuNull, cpuMedians.replica].map((v) => v.toFixed(2));
    rows.push(`| ${job.name} (${job.unit}) | ${[...cells, ...cpuCells].join(' | ')} |`);
  }
  const header =
    '| job | local only | 1 remote replica | ratio | null replica | ratio | CPU s/GiB: primary, local only | primary, replicated | primary, null replica | replica |';
  return { markdown: [header, `|${'---|'.repeat(10)}`, ...rows].join('\n'), json };
}

/** A job's block size in bytes ("4k", "1M"). */
function blockBytes(job: Job): number {
  return Number.parseInt(job.blockSize, 10) * (job.blockSize.endsWith('M') ? 2 ** 20 : 2 ** 10);
}

const benchDir = makeTempDir('weft-bench-replication-');
benchMain('bench:replication', () => main(benchDir), async () => {
  for (const stop of stops.reverse()) await stop();
  await cleanupAll();
});
