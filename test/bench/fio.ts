// Runs fio against NBD exports (--ioengine=nbd) and reads its JSON report: throughput for the
// server comparison (run.ts), latency percentiles for the isolation bench (isolation.ts).

import fs from 'node:fs';
import { run } from '../helpers/weftd';
import { mustSucceed } from './harness';

/** One direction (read or write) of a fio job's report; latencies are in nanoseconds. */
export interface FioSide {
  /** I/Os completed. */
  total_ios: number;
  iops: number;
  bw_bytes: number;
  lat_ns: { max: number; percentile?: Record<string, number> };
}

interface FioReport {
  /** usr_cpu and sys_cpu: percent of one CPU over job_runtime (ms, the ramp not counted). */
  jobs: { read: FioSide; write: FioSide; usr_cpu: number; sys_cpu: number; job_runtime: number }[];
}

/**
 * Runs one fio command and returns its report. `args` are fio's options: those before the first
 * --name apply to every job, and each --name starts a job (with its own --uri).
 */
export async function runFio(args: string[], outFile: string): Promise<FioReport> {
  mustSucceed(`fio ${args.join(' ')}`, await run('fio', ['--ioengine=nbd', '--output-format=json', `--output=${outFile}`, ...args]));
  return JSON.parse(fs.readFileSync(outFile, 'utf8')) as FioReport;
}

/** Writes every byte of an export once (1M sequential writes), so that later I/O hits allocated data; resolves with MB/s. */
export async function fill(uri: string, outFile: string): Promise<number> {
  const report = await runFio(['--name=fill', `--uri=${uri}`, '--rw=write', '--bs=1M', '--iodepth=8'], outFile);
  return report.jobs[0].write.bw_bytes / 1e6;
}

export interface Job {
  name: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  blockSize: string;
  iodepth: number;
  /** What the table shows: operations per second, or megabytes (10^6) per second. */
  unit: 'IOPS' | 'MB/s';
  /** A flush after every this many writes (fio's --fsync), as a database's commits. */
  fsync?: number;
}

export const ALL_JOBS: Job[] = [
  { name: '4k randread qd32', rw: 'randread', blockSize: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '4k randwrite qd32', rw: 'randwrite', blockSize: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '1M read qd8', rw: 'read', blockSize: '1M', iodepth: 8, unit: 'MB/s' },
  { name: '1M write qd8', rw: 'write', blockSize: '1M', iodepth: 8, unit: 'MB/s' },
];

/** Runs one job for `seconds` (after a 1 s ramp) against one export; resolves with its result in the job's unit. */
export async function runJob(job: Job, uri: string, seconds: number, outFile: string): Promise<number> {
  return (await runJobMeasured(job, uri, seconds, outFile)).value;
}

/** runJob's result, with the I/Os fio completed after the ramp and the CPU time it reports for its runtime. */
export async function runJobMeasured(job: Job, uri: string, seconds: number, outFile: string): Promise<{ value: number; ios: number; fioCpuSeconds: number }> {
  const args = [`--name=${job.name.replace(/\W+/g, '-')}`, `--uri=${uri}`, `--rw=${job.rw}`, `--bs=${job.blockSize}`, `--iodepth=${job.iodepth}`, '--time_based', `--runtime=${seconds}`, '--ramp_time=1', '--norandommap', '--randrepeat=0'];
  if (job.fsync !== undefined) args.push(`--fsync=${job.fsync}`);
  const [report] = (await runFio(args, outFile)).jobs;
  const side = job.rw.endsWith('write') ? report.write : report.read;
  const value = job.unit === 'IOPS' ? side.iops : side.bw_bytes / 1e6;
  return { value, ios: side.total_ios, fioCpuSeconds: ((report.usr_cpu + report.sys_cpu) / 100) * (report.job_runtime / 1000) };
}
