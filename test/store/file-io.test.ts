// The FileOps seam and the helpers over it (fabric/store/file-io.ts): whole-file atomic writes that
// leave no temporary file behind when a write or a sync fails, short writes retried to the end,
// reads past the end of a file, and settleAll.

import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  preadAll,
  preadAllSync,
  pwriteAllSync,
  pwritevAll,
  pwritevAllSync,
  pwritevChunked,
  pwritevChunkedSync,
  settleAll,
  WRITE_CHUNK_BYTES,
  writeFileAtomic,
  writeFileAtomicAsync,
} from '../../fabric/store/file-io';
import type { Pieces } from '../../fabric/pieces';
import { FaultyFileOps, type FaultCode } from '../helpers/faulty-fs';
import { FileOpsLayer } from '../helpers/file-ops-layer';
import { Prng } from '../helpers/prng';

let dir: string;
let file: string;
let layer: FileOpsLayer | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-file-io-'));
  file = path.join(dir, 'state.json');
});

afterEach(() => {
  layer?.uninstall();
  layer = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Makes the next call of the kind given (on any file of the test's dir) fail with code. */
function failNext(call: 'write' | 'sync', code: FaultCode): void {
  const faults = new FaultyFileOps(new Prng(1)).install();
  faults.affects = (f) => f.startsWith(dir);
  faults.calls = new Set([call]);
  faults.failNext(code);
  layer = faults;
}

describe.each([
  ['writeFileAtomic', (data: Buffer) => Promise.resolve().then(() => writeFileAtomic(file, data, dir))],
  ['writeFileAtomicAsync', (data: Buffer) => writeFileAtomicAsync(file, data, dir)],
])('%s', (_name, write) => {
  test('replaces the file with the new content, leaving no temporary file', async () => {
    fs.writeFileSync(file, 'old');
    await write(Buffer.from('new content'));
    expect(fs.readFileSync(file, 'utf8')).toBe('new content');
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
  });

  test.each([
    ['write', 'ENOSPC'],
    ['sync', 'EIO'],
  ] as const)('a failed %s (%s) leaves the old file as it was and no temporary file', async (call, code) => {
    fs.writeFileSync(file, 'old');
    failNext(call, code);
    await expect(write(Buffer.alloc(64 * 1024, 1))).rejects.toMatchObject({ code });
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
  });
});

/** A layer under which every write writes at most 1000 bytes, as a short write may. */
class ShortWrites extends FileOpsLayer {
  override writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    return this.below.writeSync(fd, buf, offset, Math.min(length, 1000), position);
  }

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    return this.below.writeSync(fd, pieces[0], 0, Math.min(pieces[0].length, 1000), position);
  }

  override writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    this.below.writev(fd, [pieces[0].subarray(0, 1000)], position, done);
  }
}

describe('short writes are retried to the end', () => {
  const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
  const pieces = [data.subarray(0, 2500), data.subarray(2500, 2501), data.subarray(2501)];

  test.each([
    ['pwriteAllSync', (fd: number) => Promise.resolve(pwriteAllSync(fd, data, 100))],
    ['pwritevAllSync', (fd: number) => Promise.resolve(pwritevAllSync(fd, pieces, 100))],
    ['pwritevAll', (fd: number) => pwritevAll(fd, pieces, 100)],
  ])('%s', async (_name, writeAll) => {
    const fd = fs.openSync(file, 'w+');
    try {
      layer = new ShortWrites().install();
      await writeAll(fd);
    } finally {
      fs.closeSync(fd);
    }
    const written = fs.readFileSync(file);
    expect(written.length).toBe(100 + data.length);
    expect(written.subarray(100).equals(data)).toBe(true);
  });
});

/** Records the position and length of every vectored write. */
class WriteRecorder extends FileOpsLayer {
  readonly writes: { position: number; bytes: number }[] = [];

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    this.writes.push({ position, bytes: pieces.reduce((sum, p) => sum + p.length, 0) });
    return this.below.writevSync(fd, pieces, position);
  }

  override writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    this.writes.push({ position, bytes: pieces.reduce((sum, p) => sum + p.length, 0) });
    this.below.writev(fd, pieces, position, done);
  }
}

describe('pool data is written in spans of the file that each lie within one WRITE_CHUNK_BYTES block', () => {
  // 100 KiB in three pieces from 12 KiB on: spans [12, 16), [16, 32), ..., [96, 112) KiB.
  const data = Buffer.from(Array.from({ length: 100 * 1024 }, (_, i) => (i * 7) % 253));
  const pieces = [data.subarray(0, 5000), data.subarray(5000, 70_000), data.subarray(70_000)];
  const position = 12 * 1024;

  test.each([
    ['pwritevChunkedSync', (fd: number) => Promise.resolve(pwritevChunkedSync(fd, pieces, position))],
    ['pwritevChunked', (fd: number) => pwritevChunked(fd, pieces, position)],
  ])('%s', async (_name, write) => {
    const fd = fs.openSync(file, 'w+');
    const recorder = new WriteRecorder().install();
    layer = recorder;
    try {
      await write(fd);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(file).subarray(position).equals(data)).toBe(true);
    const spans = [...recorder.writes].sort((a, b) => a.position - b.position);
    expect(spans[0]).toEqual({ position, bytes: 4096 });
    for (const w of spans) expect(Math.floor(w.position / WRITE_CHUNK_BYTES)).toBe(Math.floor((w.position + w.bytes - 1) / WRITE_CHUNK_BYTES));
    expect(spans.reduce((sum, w) => sum + w.bytes, 0)).toBe(data.length);
    expect(spans).toHaveLength(7);
  });
});

describe("pwritevChunked without a layer: weftd's native call, every span in one call on the thread pool", () => {
  test('it writes every piece in order, spans of the file at most WRITE_CHUNK_BYTES within one block each, as strace sees them', async () => {
    // From an odd position: 100 pieces of random sizes, some empty, then 300 of 1 to 50 bytes (more
    // than one pwritev takes: a span of them needs several calls).
    const prng = new Prng(39);
    const piece = (length: number) => Buffer.from(Array.from({ length }, () => prng.int(0, 255)));
    const pieces: Buffer[] = [...Array.from({ length: 100 }, (_, i) => piece(i % 17 === 0 ? 0 : prng.int(1, 3000))), ...Array.from({ length: 300 }, () => piece(prng.int(1, 50)))];
    const data = Buffer.concat(pieces);
    const position = 12 * 1024 + 5;
    const script = `
      const fs = require('fs');
      const { pwritevChunked } = require(${JSON.stringify(require.resolve('../../fabric/store/file-io'))});
      const pieces = ${JSON.stringify(pieces.map((p) => p.toString('base64')))}.map((p) => Buffer.from(p, 'base64'));
      const fd = fs.openSync(${JSON.stringify(file)}, 'w+');
      pwritevChunked(fd, pieces, ${position}).then(() => fs.closeSync(fd));`;
    const scriptFile = path.join(dir, 'write.js');
    fs.writeFileSync(scriptFile, script);
    const trace = path.join(dir, 'trace');
    const traced = spawnSync('strace', ['-f', '-e', 'trace=pwritev', '-o', trace, process.execPath, scriptFile], { encoding: 'utf8' });
    expect(traced.error).toBeUndefined();
    expect(traced.stderr).toBe('');
    expect(traced.status).toBe(0);
    expect(fs.readFileSync(file).subarray(position).equals(data)).toBe(true);
    const calls = [...fs.readFileSync(trace, 'utf8').matchAll(/pwritev\(\d+, .*, (\d+)\) = (\d+)$/gm)].map((m) => ({ position: Number(m[1]), bytes: Number(m[2]) }));
    expect(calls.reduce((sum, c) => sum + c.bytes, 0)).toBe(data.length);
    let next = position;
    for (const c of calls) {
      expect(c.position).toBe(next);
      expect(Math.floor(c.position / WRITE_CHUNK_BYTES)).toBe(Math.floor((c.position + c.bytes - 1) / WRITE_CHUNK_BYTES));
      next += c.bytes;
    }
    const spans = Math.floor((position + data.length - 1) / WRITE_CHUNK_BYTES) - Math.floor(position / WRITE_CHUNK_BYTES) + 1;
    expect(calls.length).toBeGreaterThan(spans);
  });

  test("a failed write rejects with the system's error code: a full device (ENOSPC), a descriptor not open for writing (EBADF); bad arguments are refused before any write", async () => {
    const full = fs.openSync('/dev/full', 'w');
    try {
      await expect(pwritevChunked(full, [Buffer.alloc(40 * 1024, 1)], 0)).rejects.toMatchObject({ code: 'ENOSPC', syscall: 'pwritev', message: 'ENOSPC: no space left on device, pwritev' });
    } finally {
      fs.closeSync(full);
    }
    fs.writeFileSync(file, 'old');
    const readOnly = fs.openSync(file, 'r');
    try {
      await expect(pwritevChunked(readOnly, [Buffer.alloc(4096, 1)], 0)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      fs.closeSync(readOnly);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    for (const [pieces, position] of [['not pieces', 0], [[Buffer.alloc(1)], NaN], [[Buffer.alloc(1)], -1], [[Buffer.alloc(1)], 2 ** 53]] as const) {
      await expect(pwritevChunked(-1, pieces as unknown as Pieces, position)).rejects.toThrow(/^writevSpans\(.*\): bad arguments$/);
    }
  });
});

test.each([
  ['preadAllSync', (fd: number, buf: Buffer) => Promise.resolve(preadAllSync(fd, buf, 3000))],
  ['preadAll', (fd: number, buf: Buffer) => preadAll(fd, buf, 3000)],
])('%s reads bytes past the end of the file as zeroes', async (_name, readAll) => {
  fs.writeFileSync(file, Buffer.alloc(4096, 7));
  const buf = Buffer.alloc(8192, 0xff);
  const fd = fs.openSync(file, 'r');
  try {
    await readAll(fd, buf);
  } finally {
    fs.closeSync(fd);
  }
  expect(buf.subarray(0, 1096).every((b) => b === 7)).toBe(true);
  expect(buf.subarray(1096).every((b) => b === 0)).toBe(true);
});

describe('settleAll', () => {
  /** Runs settle after ms; resolves with what it returns, rejects with what it throws. */
  const later = <T>(ms: number, settle: () => T) => new Promise<void>((resolve) => setTimeout(resolve, ms)).then(settle);

  test('waits for every operation before rejecting with the first failure', async () => {
    let slowDone = false;
    const first = new Error('first');
    const operations = [
      Promise.reject(first),
      later(30, () => {
        slowDone = true;
      }),
      later(10, () => {
        throw new Error('second');
      }),
    ];
    await expect(settleAll(operations)).rejects.toBe(first);
    expect(slowDone).toBe(true);
  });

  test('resolves once all succeeded', async () => {
    let done = 0;
    await settleAll([later(5, () => void done++), later(1, () => void done++)]);
    expect(done).toBe(2);
  });
});
