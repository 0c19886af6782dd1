// Measures what synchronous replication costs: fio against a primary's NBD export of one volume,
// written through the replication layer to one remote replica (a real weftd on this machine), and
// the same volume served without it, jobs interleaved. The primary (a LocalEngine and our NBD
// server) runs in this process; fio and the replica in their own. Then the resync part
// (replication-resync.ts). BENCH_REPLICATION=cost or =resync runs one part only.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { NbdServer } from '../../fabric/nbd/server';
import { ReplicatedDevice } from '../../fabric/replication/replicated-device';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from '../replication/primary-volume';
import { ALL_JOBS, fill, runJob } from './fio';
import { benchMain, median, positiveInteger, saveResults } from './harness';
import { resyncBench } from './replication-resync';

const SECONDS = positiveInteger('BENCH_SECONDS', 10);
const REPEAT = positiveInteger('BENCH_REPEAT', 1);
const VOLUME_BYTES = 1024 ** 3;
const JOBS = ALL_JOBS.filter((job) => job.rw.endsWith('write'));
const EXPORTS = ['local only', '1 remote replica'] as const;
const PARTS = process.env.BENCH_REPLICATION ?? 'cost,resync';

const stops: (() => Promise<void> | void)[] = [];

async function main(dir: string): Promise<void> {
  console.error(`bench: replication, ${JOBS.length} jobs x ${REPEAT} x ${EXPORTS.length} exports, ${SECONDS} s each, in ${dir}`);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  stops.push(() => replica.closeClients());
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  stops.push(() => engine.close());
  const replicated = await ReplicatedDevice.open(local, [replica.remote(1, 10_000)], new MemoryInSyncSet(['r1']));
  stops.push(() => replicated.close());
  // The resync part swaps the device of its own export between rounds.
  const devices = new Map<string, BlockDevice>([[EXPORTS[0], local], [EXPORTS[1], replicated], ['resync', local]]);
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
    const cost = await costBench(uri, dir);
    markdown.push(cost.markdown);
    json.cost = cost.json;
  }
  if (PARTS.includes('resync')) {
    const serve = (device: BlockDevice) => void devices.set('resync', device);
    const replicaCpuSeconds = () => cpuSeconds(replica.node.pid);
    const resync = await resyncBench({ local, remote: replica.remote(1, 10_000), replicaCpuSeconds, serve, uri: uri('resync'), dir, seconds: SECONDS, repeat: REPEAT });
    markdown.push(resync.markdown);
    json.resync = resync.json;
  }
  console.log(markdown.join('\n\n'));
  console.error(`bench: results in ${saveResults('replication-', markdown.join('\n\n'), { seconds: SECONDS, repeat: REPEAT, results: json })}.{md,json}`);
}

/** The user and system CPU time of a process, in seconds (from /proc: utime and stime, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number | undefined): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** fio against the volume served with and without replication, interleaved. */
async function costBench(uri: (name: string) => string, dir: string): Promise<{ markdown: string; json: object }> {
  const rows: string[] = [];
  const json: Record<string, Record<string, number>> = {};
  for (const job of JOBS) {
    const samples = new Map<string, number[]>(EXPORTS.map((name) => [name, []]));
    for (let repetition = 1; repetition <= REPEAT; repetition++) {
      for (const name of EXPORTS) {
        const value = await runJob(job, uri(name), SECONDS, path.join(dir, `${job.rw}.json`));
        samples.get(name)?.push(value);
        console.error(`  ${job.name} #${repetition} ${name}: ${Math.round(value)} ${job.unit}`);
      }
    }
    const [plain, remote] = EXPORTS.map((name) => median(samples.get(name) ?? []));
    json[job.name] = { [EXPORTS[0]]: plain, [EXPORTS[1]]: remote };
    rows.push(`| ${job.name} (${job.unit}) | ${Math.round(plain)} | ${Math.round(remote)} | ${(remote / plain).toFixed(2)} |`);
  }
  return { markdown: ['| job | local only | 1 remote replica | ratio |', '|---|---|---|---|', ...rows].join('\n'), json };
}

const benchDir = makeTempDir('weft-bench-replication-');
benchMain('bench:replication', () => main(benchDir), async () => {
  for (const stop of stops.reverse()) await stop();
  await cleanupAll();
});
