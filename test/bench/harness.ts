// What every benchmark in test/bench/ shares: its knobs from the environment, weftd with one pool in
// the bench's temp dir, result files, and a main that cleans up on failure and on Ctrl-C.

import fs from 'node:fs';
import path from 'node:path';
import { cleanupAll, REPO_ROOT, startWeftd, type RunResult, type WeftdHandle } from '../helpers/weftd';

export const OUT_DIR = process.env.BENCH_OUT ?? path.join(REPO_ROOT, 'dist', 'bench-results');

export function positiveInteger(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not "${process.env[name]}"`);
  return value;
}

export function mustSucceed(what: string, result: RunResult): RunResult {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  return result;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** weftd on free ports, its data and its one pool ("bench", of poolBytes) in dir. */
export function startBenchWeftd(dir: string, poolBytes: number): Promise<WeftdHandle> {
  const poolDir = path.join(dir, 'weft-pool');
  fs.mkdirSync(poolDir);
  // BENCH_WEFTD_ARGS: extra weftd flags, space-separated (e.g. "--sync-interval 1").
  const extraArgs = (process.env.BENCH_WEFTD_ARGS ?? '').split(' ').filter(Boolean);
  return startWeftd({ dataDir: path.join(dir, 'weft-data'), pools: [`bench:${poolDir}:${poolBytes}`], extraArgs });
}

/** The user and system CPU time of a process, in seconds (from /proc: utime and stime, in clock ticks of 1/100 s). */
export function cpuSeconds(pid: number | undefined): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * The time the machine's cores have spent idle (waiting for I/O included) and stolen (a virtual
 * machine's cores running something else of the host's), in seconds, summed over cores.
 */
export function idleAndStolenCpuSeconds(): { idle: number; stolen: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  return { idle: (Number(fields[4]) + Number(fields[5])) / 100, stolen: Number(fields[8]) / 100 };
}

/** Saves the markdown and the JSON of one run under BENCH_OUT; returns the files' common path without extension. */
export function saveResults(prefix: string, markdown: string, json: object): string {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const base = path.join(OUT_DIR, `${prefix}${new Date().toISOString().replace(/[:.]/g, '-')}`);
  fs.writeFileSync(`${base}.md`, `${markdown}\n`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  return base;
}

/**
 * Runs a bench's main; stop() (by default: kill what test/helpers/weftd started, remove its temp
 * dirs) runs whatever happens, also on Ctrl-C. A failure is printed and sets exit code 1.
 */
export function benchMain(label: string, main: () => Promise<void>, stop: () => Promise<void> = cleanupAll): void {
  const interrupt = () => void stop().then(() => process.exit(130));
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  main()
    .finally(stop)
    .catch((error: Error) => {
      console.error(`${label}: ${error.message}`);
      process.exitCode = 1;
    });
}

/**
 * weft's event-loop delay since the last read, in ms (prom-client's monitorEventLoopDelay
 * histogram, which each scrape of /metrics reads and resets). Node's histogram records the time
 * between two of its 10 ms timer ticks, so the figures include those 10 ms: an idle loop reads
 * about 10-12 ms. They are reported as read (on the safe side against a target), not corrected.
 */
export async function eventLoopDelay(metricsUrl: string): Promise<{ p99: number; max: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const seconds = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { p99: seconds('nodejs_eventloop_lag_p99_seconds') * 1000, max: seconds('nodejs_eventloop_lag_max_seconds') * 1000 };
}
