// kill -9 in the middle of a write workload, again and again: every write acknowledged by a flush
// survives, no block reads back as an error or as a torn mix, and no space leaks.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { CRASH_VOLUME_BYTES } from '../helpers/engine-crash-child';
import { openExport } from '../helpers/open-devices';

const CHILD = path.join(__dirname, '..', 'helpers', 'engine-crash-child.js');
const BLOCK = 4096;
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-crash-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the child until it has flushed at least once, then kills it at a random moment. */
function runAndKill(startRound: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path.join(dir, 'data'), dir, String(startRound)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let lastFlushed = 0;
    let stderr = '';
    let killTimer: NodeJS.Timeout | undefined;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      for (const m of d.toString().matchAll(/FLUSHED (\d+)/g)) lastFlushed = Number(m[1]);
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), 10 + Math.random() * 300);
    });
    child.on('exit', (_code, signal) => {
      if (killTimer) clearTimeout(killTimer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited on its own: ${stderr}`));
      else resolve(lastFlushed);
    });
  });
}

test('acknowledged writes survive repeated kill -9 and recovery leaves a consistent volume', async () => {
  let round = 1;
  for (let crash = 0; crash < 8; crash++) {
    const flushed = await runAndKill(round);
    expect(flushed).toBeGreaterThanOrEqual(round);

    const engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: dir }], logger: pino({ level: 'silent' }) });
    try {
      const device = openExport(engine, 'crash');
      const data = await device.read(0, CRASH_VOLUME_BYTES); // rejects on any checksum error
      device.close();
      let newest = 0;
      for (let block = 0; block < CRASH_VOLUME_BYTES / BLOCK; block++) {
        const b = data.subarray(block * BLOCK, (block + 1) * BLOCK);
        const stampRound = b.readUInt32LE(0);
        expect(b.readUInt32LE(4)).toBe(block);
        // Every block holds a whole write of the last flushed round or a later one: never older, never torn.
        expect(stampRound).toBeGreaterThanOrEqual(flushed);
        expect(b.subarray(8).every((x) => x === ((stampRound * 31 + block) & 0xff))).toBe(true);
        newest = Math.max(newest, stampRound);
      }
      // Thin volume fully written: exactly its blocks are in use, nothing leaked.
      expect(engine.listPools()[0].usedBytes).toBe(CRASH_VOLUME_BYTES);
      round = newest + 1;
    } finally {
      await engine.close();
    }
  }
});
