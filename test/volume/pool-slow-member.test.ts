// A pool member on a slow device: its small reads and writes leave the event-loop thread for libuv's
// thread pool, where they read and write the same bytes and fail as rejections, and come back inline
// after a probe once the device is fast again.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import pino from 'pino';
import type { Pieces } from '../../fabric/pieces';
import type { Pool } from '../../fabric/store/pool';
import { emptyCatalog } from '../../fabric/volume/catalog';
import { MembersMade, openPools } from '../../fabric/volume/pool-opening';
import { FileOpsLayer } from '../helpers/file-ops-layer';

const B = 4096;
type Done = (err: NodeJS.ErrnoException | null, bytes: number) => void;

/**
 * Every file call of this process (only the pool's here) takes latencyMs: a synchronous one blocks
 * the calling thread that long, as a slow device does. Counts where the calls ran, and can fail the
 * next call on the thread pool.
 */
class SlowDevice extends FileOpsLayer {
  latencyMs = 0;
  inlineCalls = 0;
  threadPoolCalls = 0;
  failNextThreadPoolCall = false;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  override readSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    this.stall();
    return super.readSync(fd, buf, offset, length, position);
  }

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    this.stall();
    return super.writevSync(fd, pieces, position);
  }

  override read(fd: number, buf: Buffer, offset: number, length: number, position: number, done: Done): void {
    this.later(done, () => super.read(fd, buf, offset, length, position, done));
  }

  override writev(fd: number, pieces: Pieces, position: number, done: Done): void {
    this.later(done, () => super.writev(fd, pieces, position, done));
  }

  private stall(): void {
    this.inlineCalls++;
    if (this.latencyMs > 0) Atomics.wait(this.sleeper, 0, 0, this.latencyMs);
  }

  private later(done: Done, call: () => void): void {
    this.threadPoolCalls++;
    if (!this.failNextThreadPoolCall) return void setTimeout(call, this.latencyMs);
    this.failNextThreadPoolCall = false;
    const err: NodeJS.ErrnoException = new Error('EIO: i/o error, the slow device failed');
    err.code = 'EIO';
    setTimeout(() => done(err, 0), this.latencyMs);
  }
}

describe('a pool member on a slow device', () => {
  let dir: string;
  let pool: Pool;
  let device: SlowDevice;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-slow-member-'));
    pool = openPools([{ class: 'default', path: dir, sizeBytes: 8 * 1024 * 1024 }], emptyCatalog(), new MembersMade(path.join(dir, 'members-made')), pino({ level: 'silent' })).pools.get('default')!;
    device = new SlowDevice().install();
  });

  afterAll(() => {
    device.uninstall();
    pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Where each request ran: 'inline' or 'thread pool'. */
  async function where(request: () => Promise<void>): Promise<string> {
    const [inline, threadPool] = [device.inlineCalls, device.threadPoolCalls];
    await request();
    if (device.inlineCalls > inline && device.threadPoolCalls === threadPool) return 'inline';
    if (device.threadPoolCalls > threadPool && device.inlineCalls === inline) return 'thread pool';
    throw new Error('a one-block request made calls both inline and on the thread pool');
  }

  /** One random 4 KiB block per physical block number, written one request at a time. */
  const written = new Map<number, Buffer>();
  async function writeBlocks(blocks: number[]): Promise<string[]> {
    const places: string[] = [];
    for (const block of blocks) {
      const data = randomBytes(B);
      written.set(block, data);
      places.push(await where(() => pool.write(block, [data])));
    }
    return places;
  }

  async function readBackEach(): Promise<string[]> {
    const places: string[] = [];
    for (const [block, data] of written) {
      const back = Buffer.alloc(B);
      places.push(await where(() => pool.read(block, back)));
      expect(back.equals(data)).toBe(true);
    }
    return places;
  }

  test('small writes, then small reads, go to the thread pool after a few slow ones, and keep their bytes', async () => {
    device.latencyMs = 3;
    const writes = await writeBlocks([0, 7, 100, 101, 500, 3, 1000, 42, 64, 1500]);
    expect(writes[0]).toBe('inline');
    expect(writes.slice(-5)).toEqual(Array(5).fill('thread pool'));
    const reads = await readBackEach();
    expect(reads[0]).toBe('inline');
    expect(reads.slice(-5)).toEqual(Array(5).fill('thread pool'));
  });

  test('a multi-block request in pieces on the thread pool writes and reads the same bytes', async () => {
    const data = randomBytes(16 * B);
    const pieces = [data.subarray(0, 100), data.subarray(100, 5 * B + 3), data.subarray(5 * B + 3)];
    expect(await where(() => pool.write(200, pieces))).toBe('thread pool');
    const back = Buffer.alloc(16 * B);
    expect(await where(() => pool.read(200, back))).toBe('thread pool');
    expect(back.equals(data)).toBe(true);
  });

  test('a failure on the thread pool rejects the request', async () => {
    device.failNextThreadPoolCall = true;
    await expect(pool.write(300, [randomBytes(B)])).rejects.toMatchObject({ code: 'EIO' });
    device.failNextThreadPoolCall = true;
    await expect(pool.read(0, Buffer.alloc(B))).rejects.toMatchObject({ code: 'EIO' });
  });

  test('once the device is fast again, a probe after a while runs inline, and the bytes are right', async () => {
    device.latencyMs = 0;
    await new Promise((resolve) => setTimeout(resolve, 1500)); // the first stay on the thread pool lasts 1 s
    expect((await writeBlocks([5, 6, 1700]))[0]).toBe('inline');
    expect((await readBackEach())[0]).toBe('inline');
  });

  test('the small writes of one turn on a member that is still slow: only the probe runs inline, the others on the thread pool', async () => {
    // A pool of its own: its member's first stay on the thread pool is 1 s.
    const ownDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-slow-member-'));
    const own = openPools([{ class: 'default', path: ownDir, sizeBytes: 8 * 1024 * 1024 }], emptyCatalog(), new MembersMade(path.join(ownDir, 'members-made')), pino({ level: 'silent' })).pools.get('default')!;
    try {
      device.latencyMs = 3;
      for (const block of [10, 20, 30, 40]) await own.write(block, [randomBytes(B)]); // slow: the member leaves the event loop
      await new Promise((resolve) => setTimeout(resolve, 1100)); // past its first stay on the thread pool: the next call probes
      // Apart from each other in the file: gathered in one turn, not merged into one call.
      const blocks = [50, 60, 70, 80, 90, 110, 120, 130];
      const data = blocks.map(() => randomBytes(B));
      const [inline, threadPool] = [device.inlineCalls, device.threadPoolCalls];
      await Promise.all(blocks.map((block, i) => own.write(block, [data[i]])));
      expect([device.inlineCalls - inline, device.threadPoolCalls - threadPool]).toEqual([1, blocks.length - 1]);
      device.latencyMs = 0;
      for (const [i, block] of blocks.entries()) {
        const back = Buffer.alloc(B);
        await own.read(block, back);
        expect(back.equals(data[i])).toBe(true);
      }
    } finally {
      own.close();
      fs.rmSync(ownDir, { recursive: true, force: true });
    }
  });
});
