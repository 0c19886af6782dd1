// formatIfBlank never formats over a filesystem because blkid could not read it once. A read that
// fails just then (weftd or the volume's primary away for longer than the attachment waits, and
// back a moment later) cannot be timed against blkid's, so blkid's own answer to it (exit 2, no
// output, as for a blank device) comes from FakeBlkidThatCouldNotRead, a script first on PATH that
// answers so once and runs the real blkid after. The filesystem, mkfs and the reads are real.

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

test('a device blkid could not read once is probed again once it reads: its ext4 filesystem is kept, not formatted over', async () => {
  const dir = makeTempDir('weft-format-');
  const device = path.join(dir, 'device');
  fs.writeFileSync(device, Buffer.alloc(0));
  fs.truncateSync(device, 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', device]);
  const before = await uuidOf(device);
  expect(before).toMatch(/^[0-9a-f-]{36}$/);

  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const answered = path.join(dir, 'answered-once');
  const realBlkid = (await run('sh', ['-c', 'command -v blkid'])).stdout.trim();
  fs.writeFileSync(
    path.join(bin, 'blkid'),
    `#!/bin/sh\n# FakeBlkidThatCouldNotRead\nif [ ! -e ${answered} ]; then touch ${answered}; exit 2; fi\nexec ${realBlkid} "$@"\n`,
    { mode: 0o755 },
  );
  // In a process of its own: jest's sandbox keeps its own process.env, which child_process does not read.
  const script = `require(${JSON.stringify(MOUNT_MODULE)}).formatIfBlank(${JSON.stringify(device)}, 'ext4').catch((err) => { console.error(err.message); process.exit(1); })`;
  const formatted = await run(process.execPath, ['-e', script], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  expect(formatted.stderr).toBe('');
  expect(formatted.code).toBe(0);
  expect(fs.existsSync(answered)).toBe(true);
  expect(await uuidOf(device)).toBe(before);
});
