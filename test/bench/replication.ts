// Measures what synchronous replication costs: fio against a primary's NBD export of one volume,
// written through the replication layer to one remote replica (a real weftd on this machine), and
// the same volume served without it, jobs interleaved. The primary (a LocalEngine and our NBD
// server) runs in this process; fio and the replica in their own.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { NbdServer } from '../../fabric/nbd/server';
import { ReplicatedDevice } from '../../fabric/replication/replicated-device';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { ALL_JOBS, fill, runJob } from './fio';
import { benchMain, median, positiveInteger, saveResults } from './harness';

const SECONDS = positiveInteger('BENCH_SECONDS', 10);
const REPEAT = positiveInteger('BENCH_REPEAT', 1);
const VOLUME_BYTES = 1024 ** 3;
const JOBS = ALL_JOBS.filter((job) => job.rw.endsWith('write'));
const EXPORTS = ['local only', '1 remote replica'] as const;

const stops: (() => Promise<void> | void)[] = [];

async function main(dir: string): Promise<void> {
  console.error(`bench: replication, ${JOBS.length} jobs x ${REPEAT} x ${EXPORTS.length} exports, ${SECONDS} s each, in ${dir}`);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  stops.push(() => replica.closeClients());
  const local = await primaryVolume(dir);
  const replicated = await ReplicatedDevice.open(local, [replica.remote(1, 10_000)], new MemoryInSyncSet(['r1']));
  stops.push(() => replicated.close());
  const devices: Record<(typeof EXPORTS)[number], BlockDevice> = { 'local only': local, '1 remote replica': replicated };
  const server = new NbdServer({
    logger: pino({ level: 'silent' }),
    provider: {
      names: () => [...EXPORTS],
      open: (name) => (name in devices ? { device: devices[name as keyof typeof devices], close: () => undefined } : undefined),
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  stops.push(() => server.close());
  const uri = (name: string) => `nbd://127.0.0.1:${port}/${encodeURIComponent(name)}`;
  // Filling through the replicated export fills both copies, so that every job overwrites data.
  console.error(`  fill (replicated): ${Math.round(await fill(uri('1 remote replica'), path.join(dir, 'fill.json')))} MB/s`);

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
  const markdown = ['| job | local only | 1 remote replica | ratio |', '|---|---|---|---|', ...rows].join('\n');
  console.log(markdown);
  console.error(`bench: results in ${saveResults('replication-', markdown, { seconds: SECONDS, repeat: REPEAT, results: json })}.{md,json}`);
}

/** A 1 GiB volume in an engine of this process, its pool in dir; returns its local replica. */
async function primaryVolume(dir: string): Promise<LocalReplica> {
  const poolDir = path.join(dir, 'primary-pool');
  fs.mkdirSync(poolDir);
  let captured: LocalReplica | undefined;
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'primary-data'),
    pools: [{ class: 'bench', path: poolDir, sizeBytes: 2 * VOLUME_BYTES }],
    logger: pino({ level: 'silent' }),
    stackFor: (replica) => (captured = replica),
  });
  stops.push(() => engine.close());
  await engine.createVolume({ name: 'vol', sizeBytes: VOLUME_BYTES });
  return captured as LocalReplica;
}

const benchDir = makeTempDir('weft-bench-replication-');
benchMain('bench:replication', () => main(benchDir), async () => {
  for (const stop of stops.reverse()) await stop();
  await cleanupAll();
});
