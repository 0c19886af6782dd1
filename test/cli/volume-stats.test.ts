// `weft volume stats` against a real weftd while fio writes through NBD at a fixed rate: the
// figures a user would check (IOPS near fio's rate, 4 KiB per write, plausible latencies), the top
// list, --watch until Ctrl-C, an idle volume at zero, and the refusals.

import { spawn } from 'node:child_process';
import type { VolumeRates } from '../../fabric/cli/volume-rates';
import { cleanupAll, killAndWait, makeTempDir, run, track, WEFT_JS, startWeftd, type RunResult, type WeftdHandle } from '../helpers/weftd';
import { freePort } from '../helpers/free-port';
import { waitFor } from '../helpers/wait-for';

const FIO_IOPS = 200;
const FIO_DEPTH = 4;

let weftd: WeftdHandle;

beforeAll(async () => {
  weftd = await startWeftd({ pools: [`default:${makeTempDir('weft-pool-')}:1GiB`] });
  for (const [name, size] of [['busy', '256MiB'], ['idle', '64MiB']]) expectOk(await weftd.weft(['volume', 'create', name, '--size', size]));
});

afterAll(cleanupAll);

function expectOk(result: RunResult): string {
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  return result.stdout;
}

type Sample = VolumeRates & { time: string };

async function jsonLines(...args: string[]): Promise<Sample[]> {
  const stdout = expectOk(await weftd.weft(['--output', 'json', 'volume', 'stats', ...args]));
  return stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Sample);
}

/** fio at a fixed rate of 4 KiB random writes, through weftd's NBD server; resolves when it ends. */
function fioAtFixedRate(volume: string, seconds: number): Promise<RunResult> {
  return run('fio', [
    '--name=steady', '--ioengine=nbd', `--uri=${weftd.nbdUri(volume)}`, '--rw=randwrite', '--bs=4k', `--iodepth=${FIO_DEPTH}`,
    `--rate_iops=${FIO_IOPS}`, '--time_based', `--runtime=${seconds}`, '--output=/dev/null',
  ]);
}

async function connections(volume: string): Promise<number> {
  return (JSON.parse(expectOk(await weftd.weft(['--output', 'json', 'volume', 'show', volume]))) as { connections: number }).connections;
}

/** Runs `weft volume stats` with --watch until it has printed `lines` lines, then sends Ctrl-C (SIGINT). */
async function watchUntil(lines: number, ...args: string[]): Promise<{ code: number | null; stdout: string }> {
  const child = track(spawn(process.execPath, [WEFT_JS, '--endpoint', `127.0.0.1:${weftd.apiPort}`, 'volume', 'stats', '--watch', ...args]));
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor(() => stdout.split('\n').length > lines, 20_000, 50);
    child.kill('SIGINT');
    return { code: await exited, stdout };
  } finally {
    await killAndWait(child, 'SIGKILL');
  }
}

describe('while fio writes 4 KiB at 200 IOPS', () => {
  let fio: Promise<RunResult>;

  beforeAll(async () => {
    fio = fioAtFixedRate('busy', 12);
    await waitFor(async () => (await connections('busy')) === 1, 10_000, 100);
  });

  afterAll(async () => {
    expect((await fio).code).toBe(0);
  });

  it('shows write IOPS near the rate, 4 KiB per write and plausible latencies (JSON, base units)', async () => {
    const [sample, ...more] = await jsonLines('busy', '--interval', '1s');
    expect(more).toEqual([]);
    expect(sample.volume).toBe('busy');
    expect(sample.intervalSeconds).toBeGreaterThanOrEqual(0.9);
    expect(sample.writeIops).toBeGreaterThan(FIO_IOPS * 0.7);
    expect(sample.writeIops).toBeLessThan(FIO_IOPS * 1.3);
    expect(sample.writeBytesPerSecond / sample.writeIops).toBeCloseTo(4096, 6);
    expect({ readIops: sample.readIops, readBytesPerSecond: sample.readBytesPerSecond, readLatencyP50Seconds: sample.readLatencyP50Seconds }).toEqual({ readIops: 0, readBytesPerSecond: 0, readLatencyP50Seconds: null });
    const [p50, p99] = [sample.writeLatencyP50Seconds as number, sample.writeLatencyP99Seconds as number];
    expect(p50).toBeGreaterThan(0);
    expect(p99).toBeGreaterThanOrEqual(p50);
    expect(p99).toBeLessThan(1);
    expect(sample.inFlight).toBeGreaterThanOrEqual(0);
    expect(sample.inFlight).toBeLessThanOrEqual(FIO_DEPTH);
    expect(Date.parse(sample.time)).not.toBeNaN();
  });

  it('puts the volume first in the top list without a name, above the idle one', async () => {
    const samples = await jsonLines('--interval', '1s');
    expect(samples.map((s) => s.volume)).toEqual(['busy', 'idle']);
    expect(samples[0].writeIops).toBeGreaterThan(FIO_IOPS * 0.7);
    expect(samples[1].writeIops).toBe(0);
    expect((await jsonLines('--interval', '500ms', '--top', '1')).map((s) => s.volume)).toEqual(['busy']);

    const table = expectOk(await weftd.weft(['volume', 'stats', '--interval', '500ms'])).split('\n');
    expect(table[0]).toMatch(/^\d\d:\d\d:\d\d {2}top 2 of 2 volumes by IOPS$/);
    expect(table[1]).toMatch(/^VOLUME\s+R\/S\s+W\/S\s+R MB\/S\s+W MB\/S\s+R P50\s+R P99\s+W P50\s+W P99\s+IN-FLIGHT$/);
    expect(table[2]).toMatch(/^busy\s+0\.0\s+\d+\.\d\s+0\.00\s+0\.\d\d\s+-\s+-\s+\d+(us|(\.\d{1,2})?ms)\s+\d+(us|(\.\d{1,2})?ms)\s+\d+$/); // 1.7ms, 2ms: trailing zeros dropped
    expect(table[3]).toMatch(/^idle\s+0\.0\s+0\.0\s+0\.00\s+0\.00\s+-\s+-\s+-\s+-\s+0$/);
  });

  it('repeats a line per interval with --watch until Ctrl-C, then exits 0', async () => {
    const { code, stdout } = await watchUntil(4, 'busy', '--interval', '500ms');
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+R\/S\s+W\/S/);
    for (const line of lines.slice(1)) expect(line).toMatch(/^\d\d:\d\d:\d\d\s+0\.0\s+\d+\.\d\s+0\.00\s+0\.\d\d\s+-\s+-\s+\S+\s+\S+\s+\d+$/);
    // Columns line up under the header: each ends where its heading does (numbers are right-aligned).
    const ends = (line: string) => [...line.matchAll(/\S+(?: \S+)*/g)].map((word) => word.index! + word[0].length);
    for (const line of lines.slice(1)) expect(ends(line).slice(1)).toEqual(ends(lines[0]).slice(1));
  });
});

describe('an idle volume', () => {
  it('shows zeros, and no latency', async () => {
    expect(await jsonLines('idle', '--interval', '200ms')).toEqual([
      expect.objectContaining({ volume: 'idle', readIops: 0, writeIops: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0, readLatencyP99Seconds: null, writeLatencyP99Seconds: null, inFlight: 0 }),
    ]);
  });

  it('repeats the header every 20 lines with --watch', async () => {
    const { code, stdout } = await watchUntil(22, 'idle', '--interval', '100ms');
    expect(code).toBe(0);
    const headers = stdout.split('\n').flatMap((line, i) => (line.startsWith('TIME ') ? [i] : []));
    expect(headers.slice(0, 2)).toEqual([0, 21]);
  });
});

describe('refusals', () => {
  it.each([
    [['ghost'], 1, 'weft: volume ghost does not exist'],
    [['idle@nosnap'], 1, 'weft: snapshot idle@nosnap does not exist'],
    [['idle', '--interval', '0'], 2, 'weft: --interval "0" is invalid: use a duration such as 500ms, 2s or 1 (seconds), from 100ms to 3600s'],
    [['idle', '--interval', 'soon'], 2, 'weft: --interval "soon" is invalid: use a duration such as 500ms, 2s or 1 (seconds), from 100ms to 3600s'],
    [['idle', '--top', '3'], 2, 'weft: --top lists the busiest volumes: give it without a volume name'],
    [['--top', 'all'], 2, 'weft: --top "all" must be a whole number of volumes, at least 1'],
  ])('weft volume stats %j: exit %d', async (args, code, message) => {
    const result = await weftd.weft(['volume', 'stats', ...args]);
    expect(result).toMatchObject({ code, stdout: '', stderr: `${message}\n` });
  });
});

describe('across a restart of weftd', () => {
  it('shows nothing for the interval the restart falls in, never negative rates, and goes on', async () => {
    const apiPort = await freePort();
    const node = await startWeftd({ extraArgs: ['--api-port', String(apiPort)] });
    expectOk(await node.weft(['volume', 'create', 'v', '--size', '16MiB']));
    const writes = (count: number) => run('qemu-io', ['-f', 'raw', ...Array.from({ length: count }, (_, i) => ['-c', `write ${i * 4096} 4k`]).flat(), node.nbdUri('v')]);
    expect((await writes(40)).code).toBe(0); // counted by the first process, more than the second will have
    const child = track(spawn(process.execPath, [WEFT_JS, '--endpoint', `127.0.0.1:${apiPort}`, '--output', 'json', 'volume', 'stats', 'v', '--watch', '--interval', '3s']));
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const samples = () => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Sample);
    try {
      await waitFor(() => samples().length >= 1, 20_000, 50);
      await node.restart(); // within the next interval: the next sample comes from the new process
      expect((await writes(5)).code).toBe(0);
      await waitFor(() => samples().length >= 3, 20_000, 50);
      for (const sample of samples()) {
        for (const value of [sample.readIops, sample.writeIops, sample.readBytesPerSecond, sample.writeBytesPerSecond]) expect(value).toBeGreaterThanOrEqual(0);
      }
    } finally {
      await killAndWait(child, 'SIGKILL');
    }
  }, 60_000);
});
