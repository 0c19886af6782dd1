// Per-volume isolation, measured: fio's write latency on one volume, rate-limited, alone and while
// another volume of the same weftd is written and snapshotted through the control API.

import crypto from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftClient } from '../../fabric/api/client';
import { CMD, RawNbdClient } from '../helpers/nbd-raw-client';
import { makeTempDir, type WeftdHandle } from '../helpers/weftd';
import { fill, runFio, type FioSide } from './fio';
import { benchMain, eventLoopDelay, positiveInteger, saveResults, startBenchWeftd } from './harness';

const SECONDS = positiveInteger('BENCH_SECONDS', 20);
/** fio's total rate of 4k random writes, over all the volumes under load. */
const RATE_IOPS = positiveInteger('BENCH_RATE_IOPS', 2000);
/** "pair" (volume B under load, volume A snapshotted in a loop) or "eight" (see EIGHT below). */
const SCENARIO = process.env.BENCH_SCENARIO ?? 'pair';
/** pair: a cycle (snapshot A, write WRITE_BYTES to A, delete old snapshots) starts every CYCLE_MS at most. */
const CYCLE_MS = positiveInteger('BENCH_CYCLE_MS', 200);
const RAMP_SECONDS = 1;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** pair: the size of volumes A and B. */
const PAIR_VOLUME_BYTES = GiB;
const WRITE_BYTES = 4 * MiB;
/** Snapshots of the churned volume left in place; older ones are deleted each cycle. */
const KEEP_SNAPSHOTS = 3;
/** The issue's targets: B's p99 rises by at most 2 ms, its max stays under 50 ms. */
const TARGET_P99_RISE_MS = 2;
const TARGET_MAX_MS = 50;
/** eight: 8 volumes under fio, one of them snapshotted every 7 s. */
const EIGHT = { volumes: 8, volumeBytes: 256 * MiB, intervalMs: 7000 };

/** What the loop on the other volume does while fio runs. */
interface Churn {
  volume: string;
  snapshots: boolean;
  /** Written to the volume each cycle over NBD, if set. */
  writeBytes: number;
  intervalMs: number;
}

interface Phase {
  name: string;
  churn?: Churn;
}

interface PhaseResult {
  phase: string;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  iops: number;
  snapshotCycles: number;
  writtenMiB: number;
  /** weftd's event-loop delay during the phase (from its /metrics). */
  loopP99Ms: number;
  loopMaxMs: number;
}

/**
 * Runs cycles from the end of fio's ramp until fio's run time is over or `stopped` resolves, so
 * that every cycle falls in fio's measured window.
 */
async function churn(node: WeftdHandle, spec: Churn, stopped: Promise<void>): Promise<{ cycles: number; writtenBytes: number }> {
  const endsAt = Date.now() + (RAMP_SECONDS + SECONDS) * 1000;
  let stop = false;
  void stopped.then(() => (stop = true));
  const client = new WeftClient(`127.0.0.1:${node.apiPort}`);
  const writer = spec.writeBytes > 0 ? (await RawNbdClient.open(node.nbdPort, spec.volume)).client : undefined;
  const chunk = crypto.randomBytes(MiB);
  const kept: string[] = [];
  let cycles = 0;
  let writtenBytes = 0;
  let offsetBytes = 0;
  try {
    await Promise.race([sleep(RAMP_SECONDS * 1000), stopped]);
    while (!stop && Date.now() < endsAt) {
      const nextStart = Date.now() + spec.intervalMs;
      if (spec.snapshots) {
        const name = `c${cycles}`;
        await client.createSnapshot(spec.volume, name);
        kept.push(name);
      }
      for (let done = 0; writer && done < spec.writeBytes; done += chunk.length) {
        const error = await writer.write(offsetBytes, chunk);
        if (error !== 0) throw new Error(`NBD write to ${spec.volume} at ${offsetBytes} failed with error ${error}`);
        offsetBytes = (offsetBytes + chunk.length) % PAIR_VOLUME_BYTES;
        writtenBytes += chunk.length;
      }
      while (kept.length > KEEP_SNAPSHOTS) await client.deleteSnapshot(spec.volume, kept.shift()!);
      cycles++;
      await Promise.race([sleep(Math.max(0, Math.min(nextStart, endsAt) - Date.now())), stopped]);
    }
    return { cycles: spec.snapshots ? cycles : 0, writtenBytes };
  } finally {
    // fio's measured window is over: what the loop left is tidied up outside it.
    for (const name of kept) await client.deleteSnapshot(spec.volume, name);
    client.close();
    writer?.sendRequest({ type: CMD.DISC });
    writer?.socket.end();
  }
}

/** fio's latency percentile (ns) -> ms; fio names them "99.000000" and so on. */
function percentileMs(side: FioSide, percentile: number): number {
  return (side.lat_ns.percentile?.[percentile.toFixed(6)] ?? NaN) / 1e6;
}

/** fio on `uris` (one job each, reported as one group) for SECONDS, with `phase.churn` running meanwhile. */
async function runPhase(node: WeftdHandle, uris: string[], phase: Phase, outFile: string): Promise<PhaseResult> {
  const iodepth = uris.length === 1 ? 8 : 4;
  const common = ['--rw=randwrite', '--bs=4k', `--iodepth=${iodepth}`, `--rate_iops=${Math.ceil(RATE_IOPS / uris.length)}`, '--time_based', `--runtime=${SECONDS}`, `--ramp_time=${RAMP_SECONDS}`, '--norandommap', '--randrepeat=0', '--lat_percentiles=1', '--percentile_list=50:99:99.9', '--group_reporting'];
  const jobs = uris.flatMap((uri, index) => [`--name=job${index}`, `--uri=${uri}`]);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const churnDone = phase.churn ? churn(node, phase.churn, stopped) : Promise.resolve({ cycles: 0, writtenBytes: 0 });
  const metricsUrl = `http://127.0.0.1:${node.metricsPort}/metrics`;
  await eventLoopDelay(metricsUrl); // starts a fresh period
  const [report, work] = await Promise.all([runFio([...common, ...jobs], outFile).finally(stop), churnDone]);
  const loop = await eventLoopDelay(metricsUrl);
  const side = report.jobs[0].write;
  const result = {
    phase: phase.name,
    p50Ms: percentileMs(side, 50),
    p99Ms: percentileMs(side, 99),
    p999Ms: percentileMs(side, 99.9),
    maxMs: side.lat_ns.max / 1e6,
    iops: side.iops,
    snapshotCycles: work.cycles,
    writtenMiB: work.writtenBytes / MiB,
    loopP99Ms: loop.p99,
    loopMaxMs: loop.max,
  };
  console.error(`  ${phase.name}: p99 ${result.p99Ms.toFixed(2)} ms, max ${result.maxMs.toFixed(1)} ms, ${Math.round(result.iops)} IOPS, ${result.snapshotCycles} snapshot cycles, weftd event loop p99 ${loop.p99.toFixed(1)} ms max ${loop.max.toFixed(1)} ms`);
  return result;
}

/** The phases one after the other, on the same weftd and volumes. */
async function runPhases(node: WeftdHandle, dir: string, uris: string[], phases: Phase[]): Promise<PhaseResult[]> {
  const results: PhaseResult[] = [];
  for (const [index, phase] of phases.entries()) results.push(await runPhase(node, uris, phase, path.join(dir, `phase-${index}.json`)));
  return results;
}

function table(results: PhaseResult[]): string {
  const lines = ['| phase | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | IOPS | snapshot cycles | MiB written by the loop | weftd event loop p99 / max (ms) |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of results) {
    lines.push(`| ${r.phase} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.p999Ms.toFixed(2)} | ${r.maxMs.toFixed(1)} | ${Math.round(r.iops)} | ${r.snapshotCycles} | ${r.writtenMiB} | ${r.loopP99Ms.toFixed(1)} / ${r.loopMaxMs.toFixed(1)} |`);
  }
  return lines.join('\n');
}

/** The issue's two targets, the last phase (with snapshots) against the first (without): PASS or MISS each. */
function targets(baseline: PhaseResult, loaded: PhaseResult): string {
  const rise = loaded.p99Ms - baseline.p99Ms;
  const verdict = (met: boolean) => (met ? 'PASS' : 'MISS');
  return [
    '| target | without snapshots | with snapshots | result |',
    '|---|---|---|---|',
    `| p99 rises by at most ${TARGET_P99_RISE_MS} ms | ${baseline.p99Ms.toFixed(2)} ms | ${loaded.p99Ms.toFixed(2)} ms (${rise >= 0 ? '+' : ''}${rise.toFixed(2)} ms) | ${verdict(rise <= TARGET_P99_RISE_MS)} |`,
    `| max stays under ${TARGET_MAX_MS} ms | ${baseline.maxMs.toFixed(1)} ms | ${loaded.maxMs.toFixed(1)} ms | ${verdict(loaded.maxMs < TARGET_MAX_MS)} |`,
  ].join('\n');
}

/** Creates the volumes (each filled once, so that fio rewrites allocated data) and returns their NBD URIs. */
async function createVolumes(node: WeftdHandle, dir: string, names: string[], sizeBytes: number, filled: boolean): Promise<string[]> {
  const client = new WeftClient(`127.0.0.1:${node.apiPort}`);
  try {
    for (const name of names) {
      await client.createVolume({ name, sizeBytes });
      if (filled) console.error(`  fill ${name}: ${Math.round(await fill(node.nbdUri(name), path.join(dir, `fill-${name}.json`)))} MB/s`);
    }
  } finally {
    client.close();
  }
  return names.map((name) => node.nbdUri(name));
}

/** Volume B under fio; volume A written, then written and snapshotted, in a loop. */
async function pairScenario(node: WeftdHandle, dir: string): Promise<PhaseResult[]> {
  await createVolumes(node, dir, ['A'], PAIR_VOLUME_BYTES, false);
  const [uriB] = await createVolumes(node, dir, ['B'], PAIR_VOLUME_BYTES, true);
  const loop = { volume: 'A', writeBytes: WRITE_BYTES, intervalMs: CYCLE_MS };
  const phases: Phase[] = [
    { name: 'B alone' },
    { name: 'B + writes to A', churn: { ...loop, snapshots: false } },
    { name: 'B + writes and snapshots of A', churn: { ...loop, snapshots: true } },
  ];
  return runPhases(node, dir, [uriB], phases);
}

/** Eight volumes under fio; in the second phase one of them is snapshotted every 7 s. */
async function eightScenario(node: WeftdHandle, dir: string): Promise<PhaseResult[]> {
  const names = Array.from({ length: EIGHT.volumes }, (_, index) => `v${index}`);
  const uris = await createVolumes(node, dir, names, EIGHT.volumeBytes, true);
  const phases: Phase[] = [
    { name: '8 volumes, no snapshots' },
    { name: '8 volumes, snapshot of v0 every 7 s', churn: { volume: 'v0', snapshots: true, writeBytes: 0, intervalMs: EIGHT.intervalMs } },
  ];
  return runPhases(node, dir, uris, phases);
}

async function main(): Promise<void> {
  if (SCENARIO !== 'pair' && SCENARIO !== 'eight') throw new Error(`BENCH_SCENARIO must be "pair" or "eight", not "${SCENARIO}"`);
  const dir = makeTempDir('weft-bench-isolation-');
  console.error(`bench:isolation: scenario ${SCENARIO}, 4k random writes at ${RATE_IOPS} IOPS, ${SECONDS} s a phase, in ${dir}`);
  const node = await startBenchWeftd(dir, 3 * GiB);
  const results = SCENARIO === 'pair' ? await pairScenario(node, dir) : await eightScenario(node, dir);
  const markdown = `${table(results)}\n\n${targets(results[0], results[results.length - 1])}`;
  console.log(markdown);
  const json = { scenario: SCENARIO, seconds: SECONDS, rateIops: RATE_IOPS, cycleMs: CYCLE_MS, results };
  console.error(`bench:isolation: results in ${saveResults(`isolation-${SCENARIO}-`, markdown, json)}.{md,json}`);
}

benchMain('bench:isolation', main);
