// The native file calls (fabric/store/file-calls.ts) on a real file: dropping a file's cached pages,
// which recovery does before it checks what unsynced writes left on the disk, as the kernel's page
// cache (fincore) shows it.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { dropCachedPages } from '../../fabric/store/file-calls';
import { makeTempDir } from '../helpers/weftd';

const MiB = 1024 * 1024;

/** Bytes of the file in the page cache. */
function cachedBytes(file: string): number {
  const result = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`fincore ${file}: ${result.stderr}`);
  return Number(result.stdout.trim());
}

test('dropCachedPages drops the clean cached pages of a file, also those just written and synced', () => {
  const dir = makeTempDir('weft-file-calls-');
  const file = path.join(dir, 'data');
  fs.writeFileSync(file, randomBytes(4 * MiB));
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
    fs.readFileSync(file);
    expect(cachedBytes(file)).toBe(4 * MiB);
    dropCachedPages(fd, 0, 0); // 0, 0: the whole file
    expect(cachedBytes(file)).toBe(0);
    expect(fs.readFileSync(file).length).toBe(4 * MiB);
    expect(() => dropCachedPages(fd, -1, MiB)).toThrow(/bad arguments/);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
