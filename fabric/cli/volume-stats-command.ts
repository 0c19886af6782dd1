// `weft volume stats [VOL]`: a live view of I/O from weftd's own counters, as iostat gives of
// disks. Two samples --interval apart make one line (without VOL, one table of the busiest
// volumes); --watch goes on until Ctrl-C. --output json prints one JSON object per line instead.

import { setTimeout as sleep } from 'node:timers/promises';
import type { VolumeStatsResponse } from '../api/messages';
import { exportArg } from './args';
import { STREAMED, type CommandContext, type Streamed } from './context';
import { usageError } from './errors';
import { formatLatency, table, tableLine, type Column } from './output';
import { volumeRates, type VolumeRates } from './volume-rates';

export interface StatsOptions {
  interval: string;
  watch?: boolean;
  top?: string;
}

/** A single volume's view repeats its header this often, as iostat does. */
const HEADER_EVERY_LINES = 20;
const DEFAULT_TOP = 10;

export async function volumeStats(context: CommandContext, [name]: [string | undefined], options: StatsOptions): Promise<Streamed> {
  const volume = name === undefined ? undefined : exportArg(name);
  const intervalMs = intervalArg(options.interval);
  if (volume !== undefined && options.top !== undefined) throw usageError('--top lists the busiest volumes: give it without a volume name');
  const view = volume === undefined ? topView(context, options.top === undefined ? DEFAULT_TOP : topArg(options.top)) : volumeView(context);

  // Ctrl-C ends a --watch between two lines, and the command with exit 0.
  const interrupted = new AbortController();
  const interrupt = () => interrupted.abort();
  if (options.watch) process.once('SIGINT', interrupt);
  try {
    let before = await context.client.volumeStats(volume);
    do {
      if (!(await pause(intervalMs, interrupted.signal))) break;
      const after = await context.client.volumeStats(volume);
      // Its clock went back: weftd restarted between the samples, and its counters with it. Nothing to
      // show for that interval (the rates would be negative, or span two processes); the next starts here.
      if (after.monotonicSeconds > before.monotonicSeconds) view(ratesBetween(before, after), new Date());
      before = after;
    } while (options.watch && !interrupted.signal.aborted);
  } finally {
    process.off('SIGINT', interrupt);
  }
  return STREAMED;
}

/** false when interrupted before the time was up. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** The rates of every volume of the second sample, over the time between the samples on weftd's clock. */
function ratesBetween(before: VolumeStatsResponse, after: VolumeStatsResponse): VolumeRates[] {
  const seconds = after.monotonicSeconds - before.monotonicSeconds;
  const earlier = new Map(before.volumes.map((v) => [v.volume, v]));
  return after.volumes.map((v) => volumeRates(earlier.get(v.volume), v, seconds, after.latencyBucketBounds));
}

/** Shows one interval's rates; called once per interval. */
type View = (rates: VolumeRates[], time: Date) => void;

/** One line per interval, the header first and again every HEADER_EVERY_LINES lines. */
function volumeView(context: CommandContext): View {
  let lines = 0;
  return ([rates], time) => {
    if (context.output === 'json') return writeJsonLines(context, [rates], time);
    const header = lines % HEADER_EVERY_LINES === 0 ? `${tableLine(VOLUME_LINE_COLUMNS)}\n` : '';
    context.stdout.write(`${header}${tableLine(VOLUME_LINE_COLUMNS, { rates, time })}\n`);
    lines++;
  };
}

/** One table per interval of the `top` volumes with the most IOPS, busiest first. */
function topView(context: CommandContext, top: number): View {
  let shown = 0;
  return (all, time) => {
    const busiest = [...all].sort((a, b) => iops(b) - iops(a) || a.volume.localeCompare(b.volume)).slice(0, top);
    if (context.output === 'json') return writeJsonLines(context, busiest, time);
    const gap = shown++ > 0 ? '\n' : '';
    const title = `${clockTime(time)}  top ${busiest.length} of ${all.length} volumes by IOPS`;
    const body = busiest.length > 0 ? table(TOP_COLUMNS, busiest.map((rates) => ({ rates, time }))) : 'no volumes';
    context.stdout.write(`${gap}${title}\n${body}\n`);
  };
}

function writeJsonLines(context: CommandContext, rates: VolumeRates[], time: Date): void {
  for (const r of rates) context.stdout.write(`${JSON.stringify({ time: time.toISOString(), ...r })}\n`);
}

function iops(rates: VolumeRates): number {
  return rates.readIops + rates.writeIops;
}

interface StatsRow {
  rates: VolumeRates;
  time: Date;
}

function clockTime(time: Date): string {
  return time.toTimeString().slice(0, 8);
}

const number = (header: string, value: (rates: VolumeRates) => string): Column<StatsRow> => ({ header, value: (row) => value(row.rates), alignRight: true, width: 8 });

/** MB are 10^6 bytes, as fio and the benchmarks count them. */
const RATE_COLUMNS: Column<StatsRow>[] = [
  number('R/S', (r) => r.readIops.toFixed(1)),
  number('W/S', (r) => r.writeIops.toFixed(1)),
  number('R MB/S', (r) => (r.readBytesPerSecond / 1e6).toFixed(2)),
  number('W MB/S', (r) => (r.writeBytesPerSecond / 1e6).toFixed(2)),
  number('R P50', (r) => formatLatency(r.readLatencyP50Seconds)),
  number('R P99', (r) => formatLatency(r.readLatencyP99Seconds)),
  number('W P50', (r) => formatLatency(r.writeLatencyP50Seconds)),
  number('W P99', (r) => formatLatency(r.writeLatencyP99Seconds)),
  number('IN-FLIGHT', (r) => String(r.inFlight)),
];

// TIME's width is that of HH:MM:SS: the header is printed alone, before the rows it heads.
const VOLUME_LINE_COLUMNS: Column<StatsRow>[] = [{ header: 'TIME', value: (row) => clockTime(row.time), width: 8 }, ...RATE_COLUMNS];
const TOP_COLUMNS: Column<StatsRow>[] = [{ header: 'VOLUME', value: (row) => row.rates.volume }, ...RATE_COLUMNS];

/** "500ms", "2s", "1.5" (seconds) -> milliseconds, from 100 ms to an hour. */
export function intervalArg(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  const ms = match ? Number(match[1]) * (match[2] === 'ms' ? 1 : 1000) : NaN;
  if (!(ms >= 100 && ms <= 3_600_000)) {
    throw usageError(`--interval "${text}" is invalid: use a duration such as 500ms, 2s or 1 (seconds), from 100ms to 3600s`);
  }
  return ms;
}

function topArg(text: string): number {
  if (!/^[1-9][0-9]{0,3}$/.test(text)) throw usageError(`--top "${text}" must be a whole number of volumes, at least 1`);
  return Number(text);
}
