// The NBD server against real Debian clients: nbdinfo, qemu-io, qemu-img, nbdcopy and fio, over
// file-backed exports. Real clients must also never make the server log a warning.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { NbdFixture } from './fixture';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** Runs a client; resolves with stdout, rejects (with stderr in the message) on a nonzero exit. */
async function client(command: string, args: string[]): Promise<string> {
  const { stdout } = await run(command, args, { timeout: 120_000, maxBuffer: 16 * MiB });
  return stdout;
}

/** Runs a client and resolves with its exit code and output instead of rejecting. */
async function clientStatus(command: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: 120_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failure = err as { code: number; stdout: string; stderr: string };
    return { code: failure.code, output: failure.stdout + failure.stderr };
  }
}

describe('NbdServer with real NBD clients', () => {
  let fixture: NbdFixture;

  beforeAll(async () => {
    fixture = await NbdFixture.start([
      { name: 'disk', sizeBytes: 64 * MiB },
      { name: 'ro', sizeBytes: 4 * MiB, readOnly: true },
      { name: 'shared', sizeBytes: 8 * MiB, answers: { canMultiConn: true } },
      { name: 'fio', sizeBytes: 32 * MiB },
    ]);
  });

  afterAll(async () => {
    await fixture?.stop();
  });

  afterEach(() => {
    const warnings = fixture.warnings();
    fixture.logs.length = 0;
    expect(warnings).toEqual([]);
  });

  test('nbdinfo --json reports size, flags and block sizes of a writable export', async () => {
    const info = JSON.parse(await client('nbdinfo', ['--json', fixture.uri('disk')]));
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured).toBe(true);
    const disk = info.exports[0];
    expect(disk).toMatchObject({
      'export-name': 'disk',
      'export-size': 64 * MiB,
      is_read_only: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: false,
      block_size_minimum: 1,
      block_size_preferred: 4096,
      block_size_maximum: 32 * MiB,
    });
    expect(disk.contexts).toEqual(['base:allocation']);
  });

  test('nbdinfo shows read-only and multi-conn exports as such', async () => {
    const ro = JSON.parse(await client('nbdinfo', ['--json', fixture.uri('ro')])).exports[0];
    expect(ro).toMatchObject({ 'export-size': 4 * MiB, is_read_only: true, can_fua: false, can_trim: false, can_zero: false });
    const shared = JSON.parse(await client('nbdinfo', ['--json', fixture.uri('shared')])).exports[0];
    expect(shared.can_multi_conn).toBe(true);
  });

  test('nbdinfo --list lists every export', async () => {
    const listing = JSON.parse(await client('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${fixture.port}`]));
    const names = listing.exports.map((entry: { 'export-name': string }) => entry['export-name']);
    expect(names.sort()).toEqual(['disk', 'fio', 'ro', 'shared']);
  });

  test('nbdinfo on an unknown export fails cleanly', async () => {
    const result = await clientStatus('nbdinfo', ['--json', fixture.uri('nope')]);
    expect(result.code).not.toBe(0);
    fixture.logs.length = 0; // the server rightly warns about the unknown export
  });

  test('qemu-io: write -P, flush, read -P, write -z and discard', async () => {
    const uri = fixture.uri('disk');
    await client('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0xcd 1M 1M', '-c', 'flush', uri]);
    await client('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 1M', '-c', 'read -P 0xcd 1M 1M', uri]);
    await client('qemu-io', ['-f', 'raw', '-c', 'write -z 0 64k', '-c', 'discard 64k 64k', uri]);
    await client('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 128k', '-c', 'read -P 0xab 128k 896k', uri]);
    const mismatch = await clientStatus('qemu-io', ['-f', 'raw', '-c', 'read -P 0xee 1M 4k', uri]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.output).toContain('Pattern verification failed');
  });

  test('qemu-io: FUA writes reach the file', async () => {
    await client('qemu-io', ['-f', 'raw', '-c', 'write -f -P 0x5a 8M 256k', fixture.uri('disk')]);
    const onDisk = await fs.readFile(fixture.device('disk').path);
    expect(onDisk.subarray(8 * MiB, 8 * MiB + 256 * 1024).every((byte) => byte === 0x5a)).toBe(true);
  });

  test('qemu-io: a write to a read-only export is refused', async () => {
    const result = await clientStatus('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', fixture.uri('ro')]);
    expect(result.output).toMatch(/read-only|Permission denied|Operation not permitted/i);
    fixture.logs.length = 0;
  });

  test('nbdcopy copies 64 MiB of random data in and out byte for byte', async () => {
    const source = fixture.file('random.raw');
    const copy = fixture.file('copy.raw');
    const data = randomBytes(64 * MiB);
    await fs.writeFile(source, data);
    await client('nbdcopy', [source, fixture.uri('disk')]);
    await client('nbdcopy', [fixture.uri('disk'), copy]);
    expect((await fs.readFile(copy)).equals(data)).toBe(true);
    expect((await fs.readFile(fixture.device('disk').path)).equals(data)).toBe(true);
    await client('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, fixture.uri('disk')]);
  });

  test('nbdcopy of a sparse image zeroes what was there before', async () => {
    const sparse = fixture.file('sparse.raw');
    const handle = await fs.open(sparse, 'w');
    await handle.truncate(64 * MiB);
    await handle.write(Buffer.alloc(MiB, 0x77), 0, MiB, 40 * MiB);
    await handle.close();
    await client('nbdcopy', [sparse, fixture.uri('disk')]);
    await client('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', sparse, fixture.uri('disk')]);
  });

  test('fio randwrite with crc32c verification finishes without errors', async () => {
    const output = fixture.file('fio.json');
    await client('fio', [
      '--name=verify', '--ioengine=nbd', `--uri=${fixture.uri('fio')}`, '--rw=randwrite', '--bs=4k',
      '--iodepth=16', '--size=32M', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json', `--output=${output}`,
    ]);
    const job = JSON.parse(await fs.readFile(output, 'utf8')).jobs[0];
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(32 * MiB);
    expect(job.read.io_bytes).toBe(32 * MiB);
  });

  test('qemu-img map and nbdinfo --map read base:allocation', async () => {
    const map = JSON.parse(await client('qemu-img', ['map', '--output=json', '-f', 'raw', fixture.uri('shared')]));
    expect(map).toEqual([expect.objectContaining({ start: 0, length: 8 * MiB, data: true, zero: false })]);
    const extents = await client('nbdinfo', ['--map', fixture.uri('shared')]);
    expect(extents.trim().split(/\s+/)).toEqual(['0', String(8 * MiB), '0', 'data']);
  });

  test('every connection closed its export exactly once', async () => {
    expect(fixture.exports.opens).toBeGreaterThan(0);
    expect(fixture.exports.closes).toBe(fixture.exports.opens);
    expect(fixture.server.connectionCount()).toBe(0);
  });
});
