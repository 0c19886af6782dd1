// What the metrics cost (issue 10): fio 4k random reads at QD32 through NBD against two weftd on
// this machine, one with the metrics layer and exporter (the default) and one started with
// `--metrics-port off` (no metrics layer in any volume's stack, no exporter), each serving a 1 GiB
// volume filled once. The runs alternate between the two, BENCH_REPEAT times; the ratio of the
// medians is the cost. The /metrics endpoint is scraped every second during the metrics-on runs,
// as a Prometheus would.

import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';
import { ALL_JOBS, fill, runJob } from './fio';
import { benchMain, median, mustSucceed, positiveInteger, saveResults } from './harness';

const SECONDS = positiveInteger('BENCH_SECONDS', 8);
const REPEAT = positiveInteger('BENCH_REPEAT', 3);
const GiB = 1024 ** 3;
const JOB = ALL_JOBS.find((job) => job.name === '4k randread qd32') as (typeof ALL_JOBS)[number];

async function startNode(dir: string, extraArgs: string[]): Promise<WeftdHandle> {
  const poolDir = path.join(dir, 'pool');
  fs.mkdirSync(poolDir, { recursive: true });
  const node = await startWeftd({ dataDir: path.join(dir, 'data'), pools: [`bench:${poolDir}:${2 * GiB}`], extraArgs });
  mustSucceed('weft volume create', await node.weft(['volume', 'create', 'vol', '--size', String(GiB)]));
  await fill(node.nbdUri('vol'), path.join(dir, 'fill.json'));
  return node;
}

/** Scrapes /metrics every second until stopped, as Prometheus would. */
function scrapeEverySecond(node: WeftdHandle): () => void {
  const timer = setInterval(() => void fetch(`http://127.0.0.1:${node.metricsPort}/metrics`).then((r) => r.text()).catch(() => undefined), 1000);
  return () => clearInterval(timer);
}

async function main(): Promise<void> {
  const dir = makeTempDir('weft-bench-metrics-');
  console.error(`bench: metrics cost, ${JOB.name}, ${SECONDS} s per run, ${REPEAT} runs each, in ${dir}`);
  const on = await startNode(path.join(dir, 'on'), []);
  const off = await startNode(path.join(dir, 'off'), ['--metrics-port', 'off']);
  const samples = { on: [] as number[], off: [] as number[] };
  for (let run = 1; run <= REPEAT; run++) {
    const stop = scrapeEverySecond(on);
    samples.on.push(await runJob(JOB, on.nbdUri('vol'), SECONDS, path.join(dir, 'job.json')).finally(stop));
    samples.off.push(await runJob(JOB, off.nbdUri('vol'), SECONDS, path.join(dir, 'job.json')));
    console.error(`  run ${run}: metrics on ${Math.round(samples.on.at(-1) as number)} IOPS, off ${Math.round(samples.off.at(-1) as number)} IOPS`);
  }
  const ratio = median(samples.on) / median(samples.off);
  const markdown = [
    `${JOB.name} through NBD, median of ${REPEAT} alternating runs of ${SECONDS} s (target: on / off >= 0.95)`,
    '',
    '| metrics | IOPS (median) | runs |',
    '|---|---|---|',
    `| on (scraped every second) | ${Math.round(median(samples.on))} | ${samples.on.map(Math.round).join(', ')} |`,
    `| off (--metrics-port off) | ${Math.round(median(samples.off))} | ${samples.off.map(Math.round).join(', ')} |`,
    '',
    `ratio on / off: ${ratio.toFixed(3)}`,
  ].join('\n');
  console.log(markdown);
  console.error(`bench: results in ${saveResults('metrics-cost-', markdown, { seconds: SECONDS, repeat: REPEAT, samples, ratio })}.{md,json}`);
}

benchMain('bench:metrics', main);
