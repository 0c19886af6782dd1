// Measures replicated volumes end to end, three weftd on a real etcd on this machine (issue 9):
// fio write throughput on 1, 2 and 3 replicas and through a node that forwards to the primary, with
// the CPU time fio and each weftd spend per I/O (all share this machine's cores, which bounds the
// ratios); failover time after kill -9 of the primary, quiet and under random writes over the whole
// volume; a delta resync of 64 MiB; a full rebuild of 1 GiB.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReplicationInfo, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run, startWeftd, type WeftdHandle } from '../helpers/weftd';
import { AckWriter } from './ack-writer';
import { ALL_JOBS, fill, runFio, runJobMeasured, type Job } from './fio';
import { benchMain, cpuSeconds, idleAndStolenCpuSeconds, median, mustSucceed, OUT_DIR, positiveInteger, saveResults } from './harness';

const SECONDS = positiveInteger('BENCH_SECONDS', 8);
const REPEAT = positiveInteger('BENCH_REPEAT', 1);
const FAILOVERS = positiveInteger('BENCH_FAILOVERS', 3);
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Each node's pool: room for the four 1 GiB volumes of the throughput part (on n1), filled. */
const POOL_BYTES = 5 * GiB;
/**
 * A database's commits: sequential 4 KiB writes, each followed by a flush, one at a time. Every
 * flush goes to every copy, and the activity log's hot extents keep the writes from waiting for it.
 */
const COMMIT_JOB: Job = { name: '4k write+fsync qd1', rw: 'write', blockSize: '4k', iodepth: 1, unit: 'IOPS', fsync: 1 };
/** BENCH_JOB: runs only the fio jobs whose name contains it (e.g. "4k"). */
const JOBS = [...ALL_JOBS.filter((job) => job.rw.endsWith('write')), COMMIT_JOB].filter((job) => job.name.includes(process.env.BENCH_JOB ?? ''));
/**
 * BENCH_PIN=1: the throughput part runs each node as if on a machine of its own, as far as this
 * machine's cores allow: fio and n1 (the primary, where data locality puts the client) share CPU 0,
 * n2 and n3 the others. Without it every process shares every core, so that a replica's writes
 * take CPU from the primary's and fio's.
 */
const PIN = process.env.BENCH_PIN === '1';
/** BENCH_WARM=0: the pools are measured new, never written (see warmPool). */
const WARM = process.env.BENCH_WARM !== '0';
/** BENCH_PARTS: the parts to run, of throughput, failover, delta, rebuild (default all). */
const PARTS = (process.env.BENCH_PARTS ?? 'throughput,failover,delta,rebuild').split(',');
const DELTA_BYTES = 64 * MiB;
/** How long a resync or a rebuild may take before the bench gives up and says so. */
const SETTLE_TIMEOUT_MS = 300_000;

const nodes: WeftdHandle[] = [];
const node = (id: string) => nodes.find((n) => n.nodeId === id) as WeftdHandle;

async function main(dir: string): Promise<void> {
  console.error(`bench: cluster, 3 weftd on etcd, ${SECONDS} s per fio job, in ${dir}`);
  await startCluster(dir);
  // The phases that kill and restart nodes come first: a restart after the throughput phase's
  // gigabytes of writes once missed test/helpers' 15 s startup limit on this loaded machine.
  const parts: [string, () => Promise<Section>][] = [
    ['failover', () => failover(dir)],
    ['delta', () => deltaResync(dir)],
    ['rebuild', () => fullRebuild(dir)],
    ['throughput', () => throughput(dir)],
  ];
  const unknown = PARTS.filter((p) => !parts.some(([name]) => name === p));
  if (unknown.length > 0) throw new Error(`BENCH_PARTS names no such part: ${unknown.join(', ')}`);
  const sections: Section[] = [];
  for (const [name, part] of parts) if (PARTS.includes(name)) sections.push(await part());
  if (PARTS.includes('throughput')) sections.unshift(sections.pop() as Section); // the throughput table first
  const markdown = sections.map((s) => s.markdown).join('\n\n');
  console.log(markdown);
  const json = Object.fromEntries(sections.map((s) => [s.name, s.json]));
  console.error(`bench: results in ${saveResults('cluster-', markdown, { seconds: SECONDS, repeat: REPEAT, ...json })}.{md,json}`);
}

interface Section {
  name: string;
  markdown: string;
  json: object;
}

async function startCluster(dir: string): Promise<void> {
  const etcd = await startEtcd(1);
  for (const id of ['n1', 'n2', 'n3']) {
    const pools = [`ssd:${makeTempDir(`weft-bench-pool-${id}-`)}:${POOL_BYTES}`];
    nodes.push(await startWeftd({ pools, extraArgs: ['--store', etcd.storeSpec, '--node-id', id, '--advertise', '127.0.0.1'] }));
  }
  if (WARM) for (const n of nodes) await warmPool(n, dir);
}

/**
 * BENCH_WARM (default 1): each node's pool is written through once before anything is measured, as
 * the pool of a node in service has been: a scratch volume as large as the pool allows, filled, then
 * deleted (its blocks stay allocated in the pool file: weft frees blocks, it does not punch holes).
 * Without it, the first writes into each part of a new pool file pay the filesystem's allocation of
 * the file's blocks and, on this virtual machine, the host's first touch of each page-cache page,
 * which copy-on-write scatters over the jobs in an order that favours whichever volume runs later.
 */
async function warmPool(n: WeftdHandle, dir: string): Promise<void> {
  const sizeBytes = POOL_BYTES - 64 * MiB; // leaves room for the pool's own metadata
  mustSucceed('weft volume create warm', await n.weft(['volume', 'create', 'warm', '--size', String(sizeBytes)]));
  const mbps = await fill(n.nbdUri('warm'), path.join(dir, 'warm.json'));
  mustSucceed('weft volume delete warm', await n.weft(['volume', 'delete', 'warm']));
  console.error(`  warmed ${n.nodeId}'s pool: ${(sizeBytes / GiB).toFixed(1)} GiB written at ${Math.round(mbps)} MB/s`);
}

async function weftJson<T>(via: WeftdHandle, args: string[]): Promise<T> {
  return JSON.parse(mustSucceed(`weft ${args.join(' ')}`, await via.weft([...args, '--output', 'json'])).stdout) as T;
}

async function replication(via: WeftdHandle, volume: string): Promise<ReplicationInfo> {
  const info = await weftJson<VolumeInfo>(via, ['volume', 'show', volume]);
  if (!info.replication) throw new Error(`volume ${volume} is not replicated`);
  return info.replication;
}

/** The volume's replication once `done` holds for it, polled through `via`. */
async function until(via: WeftdHandle, volume: string, done: (r: ReplicationInfo) => boolean): Promise<ReplicationInfo> {
  let last: ReplicationInfo | undefined;
  try {
    // A node that is restarting or that lost the store a moment ago answers with an error: poll on.
    await waitFor(async () => {
      last = await replication(via, volume).catch(() => last);
      return last !== undefined && done(last);
    }, SETTLE_TIMEOUT_MS, 100);
  } catch {
    throw new Error(`volume ${volume} did not get there within ${SETTLE_TIMEOUT_MS} ms; last seen: ${JSON.stringify(last)}`);
  }
  return last as ReplicationInfo;
}

const allInSync = (r: ReplicationInfo) => r.replicas.every((c) => c.state === 'in-sync');

/** Creates a volume through n1, replicated with its primary on n1 unless `replicas` is undefined; waits until it is in sync. */
async function create(volume: string, sizeBytes: number, replicas?: number): Promise<void> {
  const placement = replicas === undefined ? [] : ['--replicas', String(replicas), '--locality', 'n1'];
  mustSucceed(`weft volume create ${volume}`, await node('n1').weft(['volume', 'create', volume, '--size', String(sizeBytes), ...placement]));
  if (replicas !== undefined) await until(node('n1'), volume, allInSync);
}

async function remove(volume: string): Promise<void> {
  mustSucceed(`weft volume delete ${volume}`, await node('n1').weft(['volume', 'delete', volume]));
}

// ---- 1. fio: 1, 2 and 3 replicas, and through a node that forwards ----

async function throughput(dir: string): Promise<Section> {
  const targets = [
    { label: 'local volume (no --replicas)', volume: 'plain', replicas: undefined, via: 'n1' },
    { label: '1 replica', volume: 'rep1', replicas: 1, via: 'n1' },
    { label: '2 replicas', volume: 'rep2', replicas: 2, via: 'n1' },
    { label: '2 replicas, attached on n2', volume: 'rep2', replicas: 2, via: 'n2' },
    { label: '3 replicas', volume: 'rep3', replicas: 3, via: 'n1' },
  ];
  const uri = (t: (typeof targets)[number]) => node(t.via).nbdUri(t.volume);
  if (PIN) await pinNodes();
  for (const t of targets.filter((t) => t.via === 'n1')) {
    await create(t.volume, GiB, t.replicas);
    // Filled once (through the primary), so that the jobs overwrite allocated blocks on every copy.
    console.error(`  fill ${t.label}: ${Math.round(await fill(uri(t), path.join(dir, 'fill.json')))} MB/s`);
  }
  const results: Record<string, Record<string, number>> = {};
  /** Per job and target, each round's IOPS over the same round's 1-replica IOPS. */
  const pairedRatios: Record<string, Record<string, number[]>> = {};
  const cpuRows: string[] = [];
  const cpuJson: Record<string, Record<string, CpuPerIo>> = {};
  for (const job of JOBS) {
    const samples = targets.map((): number[] => []);
    const cpuSamples = targets.map((): CpuPerIo[] => []);
    for (let repetition = 1; repetition <= REPEAT; repetition++) {
      for (const [i, t] of targets.entries()) {
        const { value, cpu } = await measuredJob(job, uri(t), path.join(dir, 'job.json'));
        samples[i].push(value);
        cpuSamples[i].push(cpu);
        console.error(`  ${job.name} #${repetition} ${t.label}: ${Math.round(value)} ${job.unit}; CPU us per I/O ${JSON.stringify(cpu)}`);
      }
    }
    results[`${job.name} (${job.unit})`] = Object.fromEntries(targets.map((t, i) => [t.label, median(samples[i])]));
    const baseSamples = samples[targets.findIndex((t) => t.label === '1 replica')];
    pairedRatios[`${job.name} (${job.unit})`] = Object.fromEntries(
      targets.flatMap((t, i) => (t.replicas !== undefined && t.replicas > 1 ? [[t.label, samples[i].map((v, round) => v / baseSamples[round])]] : [])),
    );
    cpuJson[job.name] = Object.fromEntries(targets.map((t, i) => [t.label, medianCpu(cpuSamples[i])]));
    for (const t of targets) {
      const c = cpuJson[job.name][t.label];
      cpuRows.push(`| ${job.name} | ${t.label} | ${[c.fio, c.n1, c.n2, c.n3, c.fio + c.n1 + c.n2 + c.n3].map((v) => v.toFixed(1)).join(' | ')} | ${Math.round(c.idlePercent)} | ${Math.round(c.stolenPercent)} |`);
    }
  }
  for (const volume of ['plain', 'rep1', 'rep2', 'rep3']) await remove(volume);

  const base = targets.findIndex((t) => t.label === '1 replica');
  const rows = Object.entries(results).map(([job, byLabel]) => {
    const values = Object.values(byLabel);
    return `| ${job} | ${values.map((v) => `${Math.round(v)} (${(v / values[base]).toFixed(2)})`).join(' | ')} |`;
  });
  // This machine's speed drifts between rounds by more than the replicas cost: each round's ratio
  // to its own 1-replica run (measured just before) cancels that drift out, the medians above do not.
  const perRound = Object.entries(pairedRatios).map(([job, byLabel]) => {
    const cells = Object.entries(byLabel).map(([label, ratios]) => `${label} ${ratios.map((r) => r.toFixed(2)).join(', ')} (median ${median(ratios).toFixed(2)})`);
    return `- ${job}: ${cells.join('; ')}`;
  });
  const header = `| job | ${targets.map((t) => t.label).join(' | ')} |\n|---|${targets.map(() => '---|').join('')}`;
  const cpuTable = [
    `CPU time per I/O in microseconds (medians), fio's own and each weftd's, and the share of the machine's ${os.cpus().length} cores left idle and stolen (by the VM's host) meanwhile`,
    '',
    '| job | volume | fio | n1 | n2 | n3 | all | idle % | stolen % |',
    '|---|---|---|---|---|---|---|---|---|',
    ...cpuRows,
  ].join('\n');
  return {
    name: 'throughput',
    markdown: `fio, median of ${REPEAT}, ${SECONDS} s each; (ratio to 1 replica), primary on n1${PIN ? `; ${PINNED}` : ''}\n\n${header}\n${rows.join('\n')}\n\nRatio to 1 replica in each round, the runs back to back:\n\n${perRound.join('\n')}\n\n${cpuTable}`,
    json: { ...results, pairedRatios, cpuPerIo: cpuJson },
  };
}

const PINNED = 'fio and n1 on CPU 0, n2 and n3 on the other cores (BENCH_PIN=1)';

/** BENCH_PIN: this process (so fio, which it starts) and n1 on CPU 0, n2 and n3 on the rest; every thread of each. */
async function pinNodes(): Promise<void> {
  const cores = os.cpus().length;
  if (cores < 2) throw new Error('BENCH_PIN=1 needs at least 2 cores');
  const rest = cores === 2 ? '1' : `1-${cores - 1}`;
  const pin = async (pid: number | undefined, cpus: string) => mustSucceed(`taskset ${cpus} ${pid}`, await run('taskset', ['-a', '-cp', cpus, String(pid)]));
  await pin(process.pid, '0');
  await pin(node('n1').pid, '0');
  for (const id of ['n2', 'n3']) await pin(node(id).pid, rest);
  console.error(`  pinned: ${PINNED}`);
}

/** CPU time per I/O in microseconds, of fio and of each weftd; idlePercent and stolenPercent: of all the cores, meanwhile. */
interface CpuPerIo {
  fio: number;
  n1: number;
  n2: number;
  n3: number;
  idlePercent: number;
  stolenPercent: number;
}

/**
 * One fio job, with the CPU time each process spent per I/O: fio's from its report, per I/O after
 * its 1 s ramp; the weftd figures, read from /proc around the whole run, include the ramp: their
 * I/Os are taken as fio's rate over the ramp too.
 */
async function measuredJob(job: Job, uri: string, outFile: string): Promise<{ value: number; cpu: CpuPerIo }> {
  // The page cache written back first: else a job pays for the writeback of the jobs before it
  // (the kernel's flusher threads on the same cores), and the later volumes in a round pay more.
  mustSucceed('sync', await run('sync', []));
  const before = { weftd: nodes.map((n) => cpuSeconds(n.pid)), machine: idleAndStolenCpuSeconds(), ms: performance.now() };
  const measured = await runJobMeasured(job, uri, SECONDS, outFile);
  const seconds = (performance.now() - before.ms) / 1000;
  const ios = (measured.ios * (SECONDS + 1)) / SECONDS;
  const [n1, n2, n3] = nodes.map((n, i) => ((cpuSeconds(n.pid) - before.weftd[i]) / ios) * 1e6);
  const machine = idleAndStolenCpuSeconds();
  const percent = (coreSeconds: number) => (100 * coreSeconds) / (seconds * os.cpus().length);
  const [idlePercent, stolenPercent] = [percent(machine.idle - before.machine.idle), percent(machine.stolen - before.machine.stolen)];
  return { value: measured.value, cpu: { fio: (measured.fioCpuSeconds / measured.ios) * 1e6, n1, n2, n3, idlePercent, stolenPercent } };
}

function medianCpu(samples: CpuPerIo[]): CpuPerIo {
  const of = (key: keyof CpuPerIo) => median(samples.map((s) => s[key]));
  return { fio: of('fio'), n1: of('n1'), n2: of('n2'), n3: of('n3'), idlePercent: of('idlePercent'), stolenPercent: of('stolenPercent') };
}

// ---- 2. failover: kill -9 of the primary while a client writes through another node ----

/** The loaded rounds' background writes: random 4k blocks over the whole volume, never flushed, so that the primary's activity log names all of it. */
const LOAD_IOPS = 3000;
const LOAD_WARMUP_MS = 5000;

interface FailoverRound {
  killed: string;
  via: string;
  loaded: boolean;
  ms: number;
  failedWrites: number;
  /** From the new primary's "serving as primary" line: what it compared and copied before it served. */
  settled: { comparedBytes: number; copiedBytes: number } | undefined;
  healMs: number;
}

async function failover(dir: string): Promise<Section> {
  const volume = 'failover';
  await create(volume, GiB, 3);
  const rounds: FailoverRound[] = [];
  for (let round = 1; round <= 2 * FAILOVERS; round++) {
    const loaded = round > FAILOVERS;
    const before = await until(node('n1'), volume, allInSync);
    const primary = node(before.primary);
    const via = nodes.find((n) => n !== primary) as WeftdHandle;
    const load = loaded ? startLoad(via.nbdUri(volume), path.join(dir, `failover-load-${round}.json`)) : undefined;
    const writer = new AckWriter(via.nbdUri(volume), 256 * MiB);
    await waitFor(() => writer.acknowledged >= 50, 60_000, 10);
    if (load) await sleep(LOAD_WARMUP_MS);
    const killedMs = performance.now();
    await primary.kill9();
    // The first write sent once the old primary is gone: the one in flight at the kill may have been
    // acknowledged by it just before it died.
    const first = await writer.firstAckSentAfter(performance.now(), SETTLE_TIMEOUT_MS);
    const ms = first.answeredMs - killedMs;
    const failedWrites = writer.records.filter((r) => !r.ok && r.answeredMs >= killedMs).length;
    await writer.stop();
    await load;
    const settled = servingSettled(volume, before.epoch + 1);
    console.error(`  failover #${round}${loaded ? ' (loaded)' : ''}: killed ${primary.nodeId}, writing through ${via.nodeId}: ${Math.round(ms)} ms, ${failedWrites} writes failed, settled ${JSON.stringify(settled)}`);
    const restartedMs = performance.now();
    await primary.start();
    await until(via, volume, (r) => r.epoch > before.epoch && allInSync(r));
    const healMs = performance.now() - restartedMs;
    rounds.push({ killed: primary.nodeId, via: via.nodeId, loaded, ms, failedWrites, settled, healMs });
    console.error(`  failover #${round}: ${primary.nodeId} back in sync ${Math.round(healMs)} ms after its restart`);
  }
  await remove(volume);
  const mib = (bytes: number | undefined) => (bytes === undefined ? '?' : (bytes / MiB).toFixed(2));
  const rows = rounds.map(
    (r, i) => `| ${i + 1} | ${r.loaded ? `fio ${LOAD_IOPS} IOPS` : 'none'} | ${r.killed} | ${r.via} | ${Math.round(r.ms)} | ${r.failedWrites} | ${mib(r.settled?.comparedBytes)} / ${mib(r.settled?.copiedBytes)} | ${Math.round(r.healMs)} |`,
  );
  const medianMs = median(rounds.filter((r) => !r.loaded).map((r) => r.ms));
  const loadedMedianMs = median(rounds.filter((r) => r.loaded).map((r) => r.ms));
  return {
    name: 'failover',
    markdown: [
      `failover, 3 replicas, 1 GiB: kill -9 of the primary to the first acknowledged 4k write (qemu-io, QD1, through another node); median ${Math.round(medianMs)} ms, ${Math.round(loadedMedianMs)} ms while fio also writes random 4k blocks over the whole volume (target <= 5000)`,
      '',
      '| round | background load | killed | written through | ms | writes failed | compared / copied by the new primary (MiB) | old primary back in sync after its restart (ms) |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
    ].join('\n'),
    json: { medianMs, loadedMedianMs, rounds },
  };
}

/** fio writing random 4k blocks over the whole volume at LOAD_IOPS, for the warmup and the failover; resolves when it ends. */
async function startLoad(uri: string, outFile: string): Promise<void> {
  const seconds = Math.ceil(LOAD_WARMUP_MS / 1000) + 15;
  await runFio([`--uri=${uri}`, '--name=load', '--rw=randwrite', '--bs=4k', '--iodepth=8', `--rate_iops=${LOAD_IOPS}`, '--time_based', `--runtime=${seconds}`, '--norandommap', '--randrepeat=0'], outFile);
}

/** What the node serving the volume at epoch compared and copied before it served, from its log. */
function servingSettled(volume: string, epoch: number): FailoverRound['settled'] {
  for (const n of nodes) {
    for (const line of n.logs().split('\n')) {
      if (!line.includes('"msg":"serving as primary"')) continue;
      const fields = JSON.parse(line) as { volume: string; epoch: number; settled?: FailoverRound['settled'] };
      if (fields.volume === volume && fields.epoch === epoch) return fields.settled;
    }
  }
  return undefined;
}

// ---- 3. delta resync: a replica stopped (SIGSTOP) while 64 MiB are written ----

async function deltaResync(dir: string): Promise<Section> {
  const volume = 'delta';
  await create(volume, GiB, 3);
  const before = await until(node('n1'), volume, allInSync);
  const primary = node(before.primary);
  const away = node(before.replicas.find((r) => r.node !== before.primary)?.node as string);
  const copiedBefore = copiedTo(before, away.nodeId);
  process.kill(away.pid as number, 'SIGSTOP');
  const stoppedMs = performance.now();
  // A write it cannot answer takes it out once the replica timeout (5 s) has run.
  mustSucceed('qemu-io', await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', primary.nbdUri(volume)]));
  const outMs = performance.now() - stoppedMs;
  await until(primary, volume, (r) => r.replicas.some((c) => c.node === away.nodeId && c.state === 'out'));
  const written = DELTA_BYTES + 4096;
  await runFio(
    ['--name=delta', `--uri=${primary.nbdUri(volume)}`, '--rw=randwrite', '--bssplit=4k/50:64k/50', `--io_size=${DELTA_BYTES}`, '--iodepth=8', '--randrepeat=0'],
    path.join(dir, 'delta.json'),
  );
  const behind = behindOf(await replication(primary, volume), away.nodeId);
  const continuedMs = performance.now();
  process.kill(away.pid as number, 'SIGCONT');
  const after = await until(primary, volume, allInSync);
  const wallMs = performance.now() - continuedMs;
  const copied = copiedTo(after, away.nodeId) - copiedBefore;
  const logged = resyncedLine(primary, volume, away.nodeId);
  await remove(volume);
  const result = { outMs, written, behind, copied, wallMs, logged, epochBefore: before.epoch, epochAfter: after.epoch };
  console.error(`  delta resync: ${JSON.stringify(result)}`);
  return {
    name: 'deltaResync',
    markdown: [
      `delta resync, 3 replicas, ${away.nodeId} stopped (SIGSTOP): out ${(outMs / 1000).toFixed(1)} s after the stop; ${mib(written)} MiB written (4k/64k random) while it was out`,
      '',
      '| behind before SIGCONT (MiB) | copied (MiB) | copied / written | SIGCONT to in sync (s) | logged: kind, copied (MiB), ms |',
      '|---|---|---|---|---|',
      `| ${mib(behind)} | ${mib(copied)} | ${(copied / written).toFixed(2)} | ${(wallMs / 1000).toFixed(1)} | ${logged ? `${logged.kind}, ${mib(logged.copiedBytes)}, ${logged.ms}` : 'no "replica resynced" line'} |`,
    ].join('\n'),
    json: result,
  };
}

// ---- 4. full rebuild: the old primary, back after a failover, gets a full copy of 1 GiB ----

async function fullRebuild(dir: string): Promise<Section> {
  const volume = 'rebuild';
  await create(volume, GiB, 2);
  const fillMBs = await fill(node('n1').nbdUri(volume), path.join(dir, 'fill.json'));
  const before = await until(node('n1'), volume, allInSync);
  const old = node(before.primary);
  const survivor = node(before.replicas.find((r) => r.node !== before.primary)?.node as string);
  await old.kill9();
  await until(survivor, volume, (r) => r.primary === survivor.nodeId && r.epoch > before.epoch);
  // Without its activity log the old primary gets the full copy this part measures (with it, the
  // extents its log names, the whole fill: it was never flushed).
  fs.rmSync(path.join(old.dataDir, 'replication', `${volume}.activity`), { force: true });
  const restartedMs = performance.now();
  await old.start();
  const after = await until(survivor, volume, allInSync);
  const wallMs = performance.now() - restartedMs;
  const copied = copiedTo(after, old.nodeId);
  const logged = resyncedLine(survivor, volume, old.nodeId);
  const mbs = logged ? logged.copiedBytes / 1e3 / logged.ms : NaN;
  await remove(volume);
  const result = { fillMBs, copied, wallMs, logged, mbs };
  console.error(`  full rebuild: ${JSON.stringify(result)}`);
  return {
    name: 'fullRebuild',
    markdown: [
      `full rebuild, 2 replicas, 1 GiB filled (${Math.round(fillMBs)} MB/s): ${old.nodeId} killed -9, ${survivor.nodeId} took over, ${old.nodeId} restarted; no client I/O meanwhile`,
      '',
      '| copied (MiB) | logged: kind, ms | MB/s (logged) | restart to in sync (s) |',
      '|---|---|---|---|',
      `| ${mib(copied)} | ${logged ? `${logged.kind}, ${logged.ms}` : 'no "replica resynced" line'} | ${Math.round(mbs)} (target >= 200) | ${(wallMs / 1000).toFixed(1)} |`,
    ].join('\n'),
    json: result,
  };
}

function copiedTo(r: ReplicationInfo, nodeId: string): number {
  return r.replicas.find((c) => c.node === nodeId)?.resyncCopiedBytes ?? 0;
}

function behindOf(r: ReplicationInfo, nodeId: string): number {
  return r.replicas.find((c) => c.node === nodeId)?.behindBytes ?? 0;
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);

/** The last "replica resynced" line the primary logged for this volume and replica. */
function resyncedLine(primary: WeftdHandle, volume: string, replica: string): { kind: string; copiedBytes: number; ms: number } | undefined {
  const lines = primary
    .logs()
    .split('\n')
    .filter((line) => line.includes('"replica resynced"'))
    .map((line) => JSON.parse(line) as { volume: string; replica: string; kind: string; copiedBytes: number; ms: number })
    .filter((entry) => entry.volume === volume && entry.replica === replica);
  return lines.at(-1);
}

/** Keeps each node's log (all its lives) beside the results, for what went wrong or took long. */
function saveLogs(): void {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const n of nodes) fs.writeFileSync(path.join(OUT_DIR, `cluster-${n.nodeId}.log`), n.logs());
  if (nodes.length > 0) console.error(`bench: node logs in ${path.join(OUT_DIR, 'cluster-n*.log')}`);
}

const benchDir = makeTempDir('weft-bench-cluster-');
benchMain('bench:cluster', () => main(benchDir), async () => {
  saveLogs();
  await cleanupAll();
});
