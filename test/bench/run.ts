// Benchmarks weft's NBD server side by side with qemu-nbd and nbdkit (file plugin) using fio, in one
// run, on one temp dir, and prints a markdown table of medians and of weft's ratio to each reference.
// BENCH_SLOW_POOL=MS runs weft alone, its pool on a device that takes MS ms per read and per write.

import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../helpers/free-port';
import { startSlowDevice, type NbdkitDevice } from '../helpers/nbdkit-device';
import { cleanupAll, makeTempDir, run, startWeftd } from '../helpers/weftd';
import { ALL_JOBS, fill, runJob, type Job } from './fio';
import { benchMain, eventLoopDelay, median, mustSucceed, positiveInteger, saveResults, startBenchWeftd } from './harness';

const SECONDS = positiveInteger('BENCH_SECONDS', 10);
const REPEAT = positiveInteger('BENCH_REPEAT', 1);
const VOLUME_BYTES = 1024 ** 3;
/** The slow device's latency per read and per write in ms, or undefined for the normal bench. */
const SLOW_POOL_MS = process.env.BENCH_SLOW_POOL ? positiveInteger('BENCH_SLOW_POOL', 0) : undefined;

/** BENCH_JOBS=write,randread runs only the jobs whose names contain one of the words. */
const JOBS = selectJobs(process.env.BENCH_JOBS);

function selectJobs(filter: string | undefined): Job[] {
  if (!filter) return ALL_JOBS;
  const words = filter.split(',').map((word) => word.trim()).filter(Boolean);
  const jobs = ALL_JOBS.filter((job) => words.some((word) => job.name.includes(word)));
  if (jobs.length === 0) throw new Error(`BENCH_JOBS=${filter} matches none of: ${ALL_JOBS.map((job) => job.name).join(', ')}`);
  return jobs;
}

interface Server {
  name: 'weft' | 'qemu-nbd' | 'nbdkit';
  uri: string;
  /** weft's /metrics, where its event-loop delay is read. */
  metricsUrl?: string;
}

/** A 1 GiB export of each server; every one is stopped by stopAll(), whatever happens. */
class Servers {
  readonly list: Server[] = [];
  private readonly pidFiles: string[] = [];

  /** The slow device, unmounted by stopAll(). */
  private slow: NbdkitDevice | undefined;

  constructor(private readonly dir: string) {}

  /** weft with its pool in the temp dir, or (latencyMs) on a slow device. */
  async startWeft(latencyMs?: number): Promise<void> {
    const node =
      latencyMs === undefined
        ? await startBenchWeftd(this.dir, 2 * VOLUME_BYTES)
        : await startWeftd({ dataDir: path.join(this.dir, 'weft-data'), pools: [`bench:${(this.slow = await startSlowDevice(this.dir, 2 * VOLUME_BYTES, latencyMs)).file}`] });
    mustSucceed('weft volume create', await node.weft(['volume', 'create', 'bench', '--size', String(VOLUME_BYTES)]));
    this.list.push({ name: 'weft', uri: node.nbdUri('bench'), metricsUrl: `http://127.0.0.1:${node.metricsPort}/metrics` });
  }

  async startQemuNbd(): Promise<void> {
    const { file, pidFile, port } = await this.prepare('qemu-nbd');
    mustSucceed('qemu-nbd', await run('qemu-nbd', ['-f', 'raw', '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), '-t', '-e', '8', '--fork', `--pid-file=${pidFile}`, file]));
    this.list.push({ name: 'qemu-nbd', uri: `nbd://127.0.0.1:${port}/disk` });
  }

  async startNbdkit(): Promise<void> {
    const { file, pidFile, port } = await this.prepare('nbdkit');
    mustSucceed('nbdkit', await run('nbdkit', ['-i', '127.0.0.1', '-p', String(port), '-P', pidFile, 'file', file]));
    this.list.push({ name: 'nbdkit', uri: `nbd://127.0.0.1:${port}/` });
  }

  /** A preallocated raw file, a pid file to stop the server by, and a free port. */
  private async prepare(name: string): Promise<{ file: string; pidFile: string; port: number }> {
    const file = path.join(this.dir, `${name}.raw`);
    mustSucceed('fallocate', await run('fallocate', ['-l', String(VOLUME_BYTES), file]));
    const pidFile = path.join(this.dir, `${name}.pid`);
    this.pidFiles.push(pidFile);
    return { file, pidFile, port: await freePort() };
  }

  /**
   * Stops the reference servers by the pids they wrote, then weftd, nbdfuse and the temp dir. The
   * slow device is unmounted lazily first: weftd still holds its file open, and nbdfuse (with its
   * nbdkit) exits once weftd is gone.
   */
  async stopAll(): Promise<void> {
    await Promise.all(this.pidFiles.filter((file) => fs.existsSync(file)).map((file) => stopPid(Number(fs.readFileSync(file, 'utf8').trim()))));
    await this.slow?.unmount().catch((error: Error) => console.error(`bench: ${error.message}`));
    this.slow = undefined;
    await cleanupAll();
  }
}

async function stopPid(pid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  for (let waitedMs = 0; alive() && waitedMs < 5000; waitedMs += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  if (alive()) process.kill(pid, 'SIGKILL');
}

type Results = Map<string, Map<Server['name'], number>>;
/** weft's event-loop delay during each job, in ms: the worst p99 and max of its repetitions. */
type LoopDelays = Map<string, { p99: number; max: number }>;

/** Every job on every server, repetitions interleaved across servers so that drift hits all alike. */
async function measure(servers: Server[], dir: string): Promise<{ results: Results; delays: LoopDelays }> {
  const results: Results = new Map();
  const delays: LoopDelays = new Map();
  for (const job of JOBS) {
    const samples = new Map<Server['name'], number[]>(servers.map((server) => [server.name, []]));
    for (let repetition = 1; repetition <= REPEAT; repetition++) {
      for (const server of servers) {
        if (server.metricsUrl) await eventLoopDelay(server.metricsUrl); // starts a fresh period
        const value = await runJob(job, server.uri, SECONDS, path.join(dir, `${server.name}-${job.rw}.json`));
        samples.get(server.name)?.push(value);
        console.error(`  ${job.name} #${repetition} ${server.name}: ${Math.round(value)} ${job.unit}`);
        if (!server.metricsUrl) continue;
        const delay = await eventLoopDelay(server.metricsUrl);
        const worst = delays.get(job.name) ?? { p99: 0, max: 0 };
        delays.set(job.name, { p99: Math.max(worst.p99, delay.p99), max: Math.max(worst.max, delay.max) });
      }
    }
    results.set(job.name, new Map([...samples].map(([name, values]) => [name, median(values)])));
  }
  return { results, delays };
}

function delayTable(delays: LoopDelays): string {
  const lines = ['| job | weft event-loop delay p99 (ms) | max (ms) |', '|---|---|---|'];
  for (const [job, { p99, max }] of delays) lines.push(`| ${job} | ${p99.toFixed(1)} | ${max.toFixed(1)} |`);
  return lines.join('\n');
}

/** Medians per server, then weft's ratio to each other server. */
function table(results: Results, names: Server['name'][]): string {
  const references = names.filter((name) => name !== 'weft');
  const header = ['job', ...names, ...references.map((name) => `weft/${name}`)];
  const lines = [`| ${header.join(' | ')} |`, `|${'---|'.repeat(header.length)}`];
  for (const job of JOBS) {
    const row = results.get(job.name);
    const value = (name: Server['name']) => row?.get(name) ?? NaN;
    const ratio = (reference: Server['name']) => (value('weft') / value(reference)).toFixed(2);
    const cells = [`${job.name} (${job.unit})`, ...names.map((name) => String(Math.round(value(name)))), ...references.map(ratio)];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(dir: string, servers: Servers): Promise<void> {
  const what = SLOW_POOL_MS === undefined ? '3 servers' : `weft only, pool on a device of ${SLOW_POOL_MS} ms per read and write`;
  console.error(`bench: ${JOBS.length} jobs x ${REPEAT} x ${what}, ${SECONDS} s each, in ${dir}`);
  await servers.startWeft(SLOW_POOL_MS);
  if (SLOW_POOL_MS === undefined) {
    await servers.startQemuNbd();
    await servers.startNbdkit();
  }
  for (const server of servers.list) console.error(`  fill ${server.name}: ${Math.round(await fill(server.uri, path.join(dir, `fill-${server.name}.json`)))} MB/s`);
  const { results, delays } = await measure(servers.list, dir);
  const markdown = `${table(results, servers.list.map((server) => server.name))}\n\n${delayTable(delays)}`;
  console.log(markdown);
  const json = {
    seconds: SECONDS,
    repeat: REPEAT,
    slowPoolMs: SLOW_POOL_MS,
    results: Object.fromEntries([...results].map(([job, row]) => [job, Object.fromEntries(row)])),
    weftEventLoopDelayMs: Object.fromEntries(delays),
  };
  console.error(`bench: results in ${saveResults('', markdown, json)}.{md,json}`);
}

const benchDir = makeTempDir('weft-bench-');
const benchServers = new Servers(benchDir);
benchMain('bench', () => main(benchDir, benchServers), () => benchServers.stopAll());
