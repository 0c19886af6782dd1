// A damaged data dir, as an operator meets it: weftd refuses to start and names the file and
// offset; `weftd --recover` says what would be lost and changes nothing; `--recover --accept-loss`
// keeps a copy of the damaged metadata and leaves a data dir that starts, without what was lost.

import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { cleanupAll, makeTempDir, run, startWeftd, WEFTD_BIN, type WeftdHandle } from '../helpers/weftd';


afterEach(cleanupAll);

function qemuIo(node: WeftdHandle, exportName: string, ...commands: string[]) {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), node.nbdUri(exportName)]);
}

function weftdArgs(dataDir: string, ...more: string[]): string[] {
  return ['--data-dir', dataDir, '--nbd-port', '0', '--api-port', '0', '--metrics-port', '0', ...more];
}

/**
 * Every file under dir (but LOCK) with the SHA-256 of its contents, to show that nothing was
 * changed; a large (sparse) pool file by its size and modification time.
 */
function snapshotFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const file = path.join(dir, entry);
    const stat = fs.statSync(file);
    if (path.basename(file) === 'LOCK' || !stat.isFile()) continue;
    files.set(entry, stat.size > 64 * 1024 * 1024 ? `${stat.size} ${stat.mtimeMs}` : crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
  }
  return files;
}

test('a damaged journal: refused with file and offset, reported by --recover, recovered by --recover --accept-loss', async () => {
  const dataDir = path.join(makeTempDir('weft-recover-'), 'data');
  const node = await startWeftd({ dataDir, pools: [`default:${path.dirname(dataDir)}:64MiB`] });
  expect((await node.weft(['volume', 'create', 'v', '--size', '8MiB'])).code).toBe(0);
  expect((await qemuIo(node, 'v', 'write -P 0x11 0 1M', 'flush')).code).toBe(0);
  // A clean restart: the checkpoint now holds v and its first MiB.
  await node.restart();
  expect((await qemuIo(node, 'v', 'write -P 0x22 1M 1M', 'flush')).code).toBe(0);
  expect((await node.weft(['snapshot', 'create', 'v', 'later'])).code).toBe(0);
  expect((await qemuIo(node, 'v', 'write -P 0x33 2M 1M', 'flush')).code).toBe(0);
  await node.kill9();

  // Flip one byte in the journal's first frame: later frames were synced, so this is damage.
  const meta = path.join(dataDir, 'meta');
  const journal = path.join(meta, fs.readdirSync(meta).find((n) => n.startsWith('journal-'))!);
  const data = fs.readFileSync(journal);
  data[40] ^= 0x04;
  fs.writeFileSync(journal, data);
  const pools = ['--pool', `default:${path.dirname(dataDir)}:64MiB`];
  const before = snapshotFiles(path.dirname(dataDir));

  const refused = await run(WEFTD_BIN, weftdArgs(dataDir, ...pools));
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(`${journal} at offset 0: a frame fails its checksum`);
  expect(refused.stderr).toContain('weftd --recover');

  const report = await run(WEFTD_BIN, weftdArgs(dataDir, ...pools, '--recover'));
  expect(report.code).toBe(1);
  expect(report.stdout).toContain(`Problem: ${journal} at offset 0`);
  expect(report.stdout).toMatch(/writes to volume v: 256 block\(s\)/);
  expect(report.stdout).toContain('snapshot v@later (created)');
  expect(report.stdout).toContain('Nothing was changed');
  expect(snapshotFiles(path.dirname(dataDir))).toEqual(before);

  const recovered = await run(WEFTD_BIN, weftdArgs(dataDir, ...pools, '--recover', '--accept-loss'));
  expect(recovered.code).toBe(0);
  expect(recovered.stdout).toContain('Recovered: 1 volume(s) and 0 snapshot(s) remain');
  const copies = fs.readdirSync(dataDir).filter((n) => n.startsWith('meta.damaged-'));
  expect(copies).toHaveLength(1);
  expect(fs.readFileSync(path.join(dataDir, copies[0], path.basename(journal))).equals(data)).toBe(true);

  // It starts again, with what the checkpoint held.
  await node.start();
  expect((await qemuIo(node, 'v', 'read -P 0x11 0 1M')).code).toBe(0);
  expect((await node.weft(['volume', 'verify', 'v'])).code).toBe(0);
  await node.stop();
}, 60_000);

test('--recover on an intact data dir says so and changes nothing; --accept-loss alone is a bad flag', async () => {
  const dataDir = path.join(makeTempDir('weft-recover-'), 'data');
  const node = await startWeftd({ dataDir });
  await node.stop();
  const before = snapshotFiles(dataDir);
  const report = await run(WEFTD_BIN, weftdArgs(dataDir, '--recover'));
  expect(report.code).toBe(0);
  expect(report.stdout).toContain('is intact: nothing to recover');
  expect(snapshotFiles(dataDir)).toEqual(before);
  const bad = await run(WEFTD_BIN, weftdArgs(dataDir, '--accept-loss'));
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('--accept-loss goes with --recover');
}, 30_000);


test('--recover on the data dir of a running weftd is refused (its metadata changes under the report), and changes nothing', async () => {
  const dataDir = path.join(makeTempDir('weft-recover-'), 'data');
  const node = await startWeftd({ dataDir });
  const before = snapshotFiles(dataDir);
  for (const flags of [['--recover'], ['--recover', '--accept-loss']]) {
    const refused = await run(WEFTD_BIN, weftdArgs(dataDir, ...flags));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/data dir .* is in use by another weftd \(pid \d+\)/);
  }
  expect(snapshotFiles(dataDir)).toEqual(before);
  expect(await node.stop()).toBe(0);
}, 30_000);
