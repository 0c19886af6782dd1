// The resync part of bench:replication (issue 9): a full rebuild of a replica whose volume has every
// byte allocated, in MB/s with no client I/O, and what a full resync costs a client that writes
// meanwhile: fio 4k randwrite qd32 IOPS during one (throttled as by default, and not) against the
// same export with the replica in sync.

import path from 'node:path';
import { ReplicatedDevice, type ReplicationOptions } from '../../fabric/replication/replicated-device';
import type { RemoteReplica } from '../../fabric/replication/remote-replica';
import type { BlockDevice, VolumeLayer } from '../../fabric/volume/block-device';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ALL_JOBS, runJob } from './fio';
import { median } from './harness';

export interface ResyncBenchSetup {
  /** The primary's local copy, filled. */
  local: VolumeLayer;
  /** The replica, outside the in-sync set as far as each new ReplicatedDevice knows. */
  remote: RemoteReplica;
  /** CPU seconds the replica's process has used so far. */
  replicaCpuSeconds(): number;
  /** Makes the export at uri serve device from the next connection on. */
  serve(device: BlockDevice): void;
  uri: string;
  dir: string;
  seconds: number;
  repeat: number;
}

/** BENCH_RESYNC_SHARE: the resyncBusyShare of the throttled rounds (default: the device's own). */
const SHARE = process.env.BENCH_RESYNC_SHARE === undefined ? undefined : Number(process.env.BENCH_RESYNC_SHARE);
const JOB = ALL_JOBS.find((job) => job.name === '4k randwrite qd32') ?? ALL_JOBS[0];
const ROUNDS = ['in sync', 'during a full resync', 'during a full resync, unthrottled'] as const;
type Round = (typeof ROUNDS)[number];

/** Runs the resync bench; resolves with its markdown and its figures. */
export async function resyncBench(setup: ResyncBenchSetup): Promise<{ markdown: string; json: object }> {
  const open = (options: ReplicationOptions = {}) => ReplicatedDevice.open(setup.local, [setup.remote], new MemoryInSyncSet([]), options);

  const rebuilds: number[] = [];
  const notes: string[] = [];
  for (let repetition = 1; repetition <= setup.repeat; repetition++) {
    const device = await open();
    const started = performance.now();
    const [primaryCpu, replicaCpu] = [process.cpuUsage(), setup.replicaCpuSeconds()];
    const bytes = await device.resync(setup.remote.id, 'full');
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(primaryCpu);
    const cpuNote = `CPU s: primary ${((cpu.user + cpu.system) / 1e6).toFixed(1)}, replica ${(setup.replicaCpuSeconds() - replicaCpu).toFixed(1)}`;
    device.close();
    rebuilds.push(bytes / 1e6 / seconds);
    notes.push(`full rebuild #${repetition}: ${Math.round(bytes / 1e6 / seconds)} MB/s, ${cpuNote}`);
    console.error(`  full rebuild #${repetition}: ${(bytes / 2 ** 20).toFixed(0)} MiB in ${seconds.toFixed(2)} s, ${Math.round(bytes / 1e6 / seconds)} MB/s, ${cpuNote}`);
  }

  const iops = new Map<Round, number[]>(ROUNDS.map((round) => [round, []]));
  const measure = async (round: Round, device: BlockDevice) => {
    setup.serve(device);
    const value = await runJob(JOB, setup.uri, setup.seconds, path.join(setup.dir, 'resync-fio.json'));
    iops.get(round)?.push(value);
    console.error(`  ${JOB.name} ${round}: ${Math.round(value)} IOPS`);
  };
  /** fio during a full resync of a new device; resolves with the device once the resync is over. */
  const duringResync = async (round: Round, options: ReplicationOptions) => {
    const device = await open(options);
    const started = performance.now();
    const resync = device.resync(setup.remote.id, 'full').then((bytes) => ({ bytes, seconds: (performance.now() - started) / 1000 }));
    await measure(round, device);
    const fioSeconds = (performance.now() - started) / 1000;
    const { bytes, seconds } = await resync;
    const note = `${round}: ${(bytes / 2 ** 20).toFixed(0)} MiB copied in ${seconds.toFixed(1)} s, fio ran ${fioSeconds.toFixed(1)} s`;
    notes.push(note);
    console.error(`  ${note}`);
    return device;
  };
  for (let repetition = 1; repetition <= setup.repeat; repetition++) {
    const device = await duringResync('during a full resync', { resyncBusyShare: SHARE });
    await measure('in sync', device); // the same device, its replica caught up
    device.close();
    (await duringResync('during a full resync, unthrottled', { resyncBusyShare: 1 })).close();
  }

  const base = median(iops.get('in sync') ?? []);
  const rows = ROUNDS.map((round) => {
    const value = median(iops.get(round) ?? []);
    return `| ${JOB.name} (IOPS), ${round} | ${Math.round(value)} | ${(value / base).toFixed(2)} |`;
  });
  const markdown = [
    `Full rebuild, 1 GiB allocated, no client I/O: ${Math.round(median(rebuilds))} MB/s (median of ${rebuilds.length})`,
    '',
    '| client job | value | ratio to in sync |',
    '|---|---|---|',
    ...rows,
    '',
    ...notes.map((note) => `- ${note}`),
  ].join('\n');
  return { markdown, json: { rebuildMBps: rebuilds, iops: Object.fromEntries(iops), notes } };
}
