// formatIfBlank never formats over a filesystem because blkid could not read it, once or more. A read that
// fails just then (weftd or the volume's primary away for longer than the attachment waits, and
// back a moment later) cannot be timed against blkid's, so blkid's own answer to it (exit 2, no
// output, as for a blank device) comes from FakeBlkidThatCouldNotRead, a script first on PATH that
// answers so a given number of times and runs the real blkid after. The filesystem, mkfs and the reads are real.

import fs from 'node:fs';
import path from 'node:path';
import { cleanupAll, makeTempDir, run } from '../helpers/weftd';

const MiB = 1024 * 1024;
/** The compiled module, as weftd runs it. */
const MOUNT_MODULE = path.join(__dirname, '..', '..', 'adapters', 'csi', 'attach', 'mount.js');

afterAll(cleanupAll);

async function uuidOf(file: string): Promise<string> {
  const result = await run('blkid', ['--probe', '--output', 'value', '--match-tag', 'UUID', file]);
  return result.stdout.trim();
}

/** A 64 MiB file that holds an ext4 filesystem; resolves with it and its filesystem's UUID. */
async function ext4Device(dir: string): Promise<{ device: string; uuid: string }> {
  const device = path.join(dir, 'device');
  fs.writeFileSync(device, Buffer.alloc(0));
  fs.truncateSync(device, 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', device]);
  const uuid = await uuidOf(device);
  expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
  return { device, uuid };
}

/**
 * formatIfBlank(device, 'ext4') in a process of its own, with FakeBlkidThatCouldNotRead first on
 * PATH: it answers "nothing" (exit 2, no output) to its first `failures` calls, then runs the real
 * blkid. (A process of its own: jest's sandbox keeps its own process.env, which child_process does
 * not read.) Resolves with the process's exit code and stderr, and the calls blkid answered so.
 */
async function formatWithBlkidFailing(dir: string, device: string, failures: number): Promise<{ code: number | null; stderr: string; failed: number }> {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const count = path.join(dir, 'failed-calls');
  fs.writeFileSync(count, '');
  const realBlkid = (await run('sh', ['-c', 'command -v blkid'])).stdout.trim();
  fs.writeFileSync(
    path.join(bin, 'blkid'),
    `#!/bin/sh\n# FakeBlkidThatCouldNotRead\nif [ $(wc -c < ${count}) -lt ${failures} ]; then printf x >> ${count}; exit 2; fi\nexec ${realBlkid} "$@"\n`,
    { mode: 0o755 },
  );
  const script = `require(${JSON.stringify(MOUNT_MODULE)}).formatIfBlank(${JSON.stringify(device)}, 'ext4').catch((err) => { console.error(err.message); process.exit(1); })`;
  const result = await run(process.execPath, ['-e', script], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  return { code: result.code, stderr: result.stderr, failed: fs.readFileSync(count).length };
}

test('a device blkid could not read once is probed again once it reads: its ext4 filesystem is kept, not formatted over', async () => {
  const dir = makeTempDir('weft-format-');
  const { device, uuid } = await ext4Device(dir);
  const formatted = await formatWithBlkidFailing(dir, device, 1);
  expect(formatted).toEqual({ code: 0, stderr: '', failed: 1 });
  expect(await uuidOf(device)).toBe(uuid);
});

test('a device blkid could not read twice is refused, not formatted: its start holds data', async () => {
  const dir = makeTempDir('weft-format-');
  const { device, uuid } = await ext4Device(dir);
  const formatted = await formatWithBlkidFailing(dir, device, 2);
  expect(formatted.code).toBe(1);
  expect(formatted.stderr).toMatch(/is not blank \(its first MiB holds data\) but blkid finds no filesystem .*refusing to format it/);
  expect(formatted.failed).toBe(2);
  expect(await uuidOf(device)).toBe(uuid);
});

test('data with no filesystem signature (a raw block volume used as a filesystem) is refused, and left as it was', async () => {
  const dir = makeTempDir('weft-format-');
  const device = path.join(dir, 'device');
  const data = Buffer.alloc(2 * MiB, 'raw application data ');
  fs.writeFileSync(device, data);
  fs.truncateSync(device, 64 * MiB);
  const formatted = await formatWithBlkidFailing(dir, device, 0);
  expect(formatted.code).toBe(1);
  expect(formatted.stderr).toMatch(/refusing to format it .*zero its first MiB to have it formatted/);
  expect(fs.readFileSync(device).subarray(0, data.length).equals(data)).toBe(true);
});

test('a blank device is formatted', async () => {
  const dir = makeTempDir('weft-format-');
  const device = path.join(dir, 'device');
  fs.writeFileSync(device, Buffer.alloc(0));
  fs.truncateSync(device, 64 * MiB);
  expect(await formatWithBlkidFailing(dir, device, 0)).toEqual({ code: 0, stderr: '', failed: 0 });
  expect(await uuidOf(device)).toMatch(/^[0-9a-f-]{36}$/);
});

test('a device that reads as empty (size 0, not attached as it should be) is refused, not formatted', async () => {
  const dir = makeTempDir('weft-format-');
  const device = path.join(dir, 'device');
  fs.writeFileSync(device, Buffer.alloc(0));
  const formatted = await formatWithBlkidFailing(dir, device, 0);
  expect(formatted.code).toBe(1);
  expect(formatted.stderr).toMatch(/reads as empty \(size 0\).*refusing to format it/);
  expect(fs.statSync(device).size).toBe(0);
});

test("a blank device is formatted while every thread of weftd's pool is busy (its reads of a volume attached on the node would wait for weftd itself)", async () => {
  const dir = makeTempDir('weft-format-');
  const device = path.join(dir, 'device');
  fs.writeFileSync(device, Buffer.alloc(0));
  fs.truncateSync(device, 64 * MiB);
  // Each open of a FIFO without a writer holds one of the pool's 2 threads until the process ends.
  const fifos = [0, 1].map((i) => path.join(dir, `fifo-${i}`));
  for (const fifo of fifos) expect((await run('mkfifo', [fifo])).code).toBe(0);
  // The process ends once the pool's threads are let go (a writer opens each FIFO): Node joins them at exit.
  const script = [
    `const fs = require('node:fs');`,
    `const fifos = ${JSON.stringify(fifos)};`,
    `for (const fifo of fifos) fs.promises.open(fifo, 'r');`,
    `const end = (code) => { for (const fifo of fifos) fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)); process.exitCode = code; };`,
    `const timer = setTimeout(() => { console.error('formatIfBlank did not finish within 20 s'); end(2); }, 20000);`,
    `require(${JSON.stringify(MOUNT_MODULE)}).formatIfBlank(${JSON.stringify(device)}, 'ext4').then(() => { clearTimeout(timer); end(0); }, (err) => { clearTimeout(timer); console.error(err.message); end(1); });`,
  ].join('\n');
  const result = await run(process.execPath, ['-e', script], { env: { ...process.env, UV_THREADPOOL_SIZE: '2' } });
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  expect(await uuidOf(device)).toMatch(/^[0-9a-f-]{36}$/);
});
