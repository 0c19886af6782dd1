// kill -9 of a real weftd in the middle of a workload, again and again: every write that a FLUSH
// acknowledged reads back after restart, no block fails its checksum, and no space leaks.

import { spawn, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cleanupAll, makeTempDir, run, startWeftd, WeftdHandle } from '../helpers/weftd';

const REGION_BYTES = 256 * 1024;
const REGIONS = 64; // the first 16 MiB: acknowledged patterns; fio scribbles on the next 32 MiB
let weftd: WeftdHandle;
let work: string;

beforeAll(async () => {
  work = makeTempDir('weft-durable-');
  weftd = await startWeftd({ pools: [`default:${work}:1GiB`] });
  const created = await weftd.weft(['volume', 'create', 'durable', '--size', '64MiB']);
  expect(created.code).toBe(0);
});
afterAll(cleanupAll);

/** Pattern bytes are 1..255: 0 would be indistinguishable from a never-written region. */
const patternOf = (write: number) => (write % 255) + 1;

interface RegionState {
  acknowledged?: number;
  inFlight?: number;
}

/** Writes pattern after pattern, each followed by a flush, until stopped; records what was acknowledged. */
async function flushedWrites(regions: RegionState[], stop: () => boolean, firstWrite: number): Promise<number> {
  let write = firstWrite;
  while (!stop()) {
    const region = write % REGIONS;
    const pattern = patternOf(write);
    regions[region].inFlight = pattern;
    const r = await run('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${region * REGION_BYTES} ${REGION_BYTES}`, '-c', 'flush', weftd.nbdUri('durable')]);
    if (r.code !== 0) break; // the daemon died under it: not acknowledged
    regions[region].acknowledged = pattern;
    regions[region].inFlight = undefined;
    write++;
  }
  return write;
}

/** Offsets (within the region) of 4 KiB blocks that are not filled with one of the allowed bytes. */
function badBlocks(region: Buffer, allowed: number[]): number[] {
  const bad: number[] = [];
  for (let at = 0; at < region.length; at += 4096) {
    const block = region.subarray(at, at + 4096);
    if (!allowed.some((p) => block.every((b) => b === p))) bad.push(at);
  }
  return bad;
}

function wholly(data: Buffer, region: number, pattern: number): boolean {
  return data.subarray(region * REGION_BYTES, (region + 1) * REGION_BYTES).every((b) => b === pattern);
}

function backgroundFio(): ChildProcess {
  return spawn('fio', [
    '--name=noise', '--ioengine=nbd', `--uri=${weftd.nbdUri('durable')}`, '--rw=randwrite', '--bs=4k', '--iodepth=32',
    '--offset=16M', '--size=32M', '--time_based', '--runtime=30', '--verify_state_save=0', '--output=/dev/null',
  ], { stdio: 'ignore' });
}

test('acknowledged writes survive repeated kill -9 of weftd mid-workload', async () => {
  const regions: RegionState[] = Array.from({ length: REGIONS }, () => ({}));
  let nextWrite = 0;
  for (let crash = 0; crash < 4; crash++) {
    const fio = backgroundFio();
    let killed = false;
    const writer = flushedWrites(regions, () => killed, nextWrite);
    await new Promise((resolve) => setTimeout(resolve, 800 + Math.random() * 1200));
    await weftd.kill9();
    killed = true;
    nextWrite = await writer;
    fio.kill('SIGKILL');
    await weftd.start();

    const image = path.join(work, `after-crash-${crash}.raw`);
    const copy = await run('nbdcopy', [weftd.nbdUri('durable'), image]);
    expect(copy.stderr).toBe('');
    const data = fs.readFileSync(image).subarray(0, REGIONS * REGION_BYTES);
    fs.rmSync(image);
    for (let region = 0; region < REGIONS; region++) {
      const { acknowledged, inFlight } = regions[region];
      // Every 4 KiB block holds the last acknowledged pattern or, where a write was cut off by
      // the crash, the pattern it was writing (an unacknowledged write may land in part).
      const allowed = [acknowledged ?? 0, inFlight].filter((p): p is number => p !== undefined);
      const bad = badBlocks(data.subarray(region * REGION_BYTES, (region + 1) * REGION_BYTES), allowed);
      expect({ region, allowed, bad }).toEqual({ region, allowed, bad: [] });
      regions[region] = { acknowledged: inFlight !== undefined && !wholly(data, region, acknowledged ?? 0) ? inFlight : acknowledged };
    }
    const verify = await weftd.weft(['volume', 'verify', 'durable']);
    expect(verify.stdout).toMatch(/no bad blocks/);
    expect(verify.code).toBe(0);
    const volume = JSON.parse((await weftd.weft(['volume', 'show', 'durable', '--output', 'json'])).stdout);
    const pool = JSON.parse((await weftd.weft(['pool', 'list', '--output', 'json'])).stdout)[0];
    expect(pool.usedBytes).toBe(volume.allocatedBytes); // nothing leaked
  }
  expect(nextWrite).toBeGreaterThan(4); // the workload really ran between the crashes
});
