// Raising a volume's epoch in the engine while a replication connection of the old epoch writes:
// each of its writes lands and is acknowledged before the raise completes, or is refused and does
// not land. Lowering is refused.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const MiB = 1024 * 1024;
const BLOCK = 4096;
let engine: LocalEngine;

beforeEach(async () => {
  const dir = makeTempDir('weft-epoch-');
  fs.mkdirSync(path.join(dir, 'pool'));
  engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: path.join(dir, 'pool'), sizeBytes: 64 * MiB }], logger: pino({ level: 'silent' }) });
  await engine.createVolume({ name: 'vol', sizeBytes: 16 * MiB });
});

afterEach(() => engine.close());
afterAll(cleanupAll);

it('refuses to lower the epoch, and keeps it', async () => {
  await engine.raiseEpoch('vol', 3);
  await expect(engine.raiseEpoch('vol', 2)).rejects.toThrow('volume vol is at epoch 3; its epoch cannot go back to 2');
  expect(engine.getVolume('vol').epoch).toBe(3);
  await expect(engine.raiseEpoch('vol', -1)).rejects.toThrow(/not a non-negative integer/);
});

it('acknowledges the writes of an older connection sent before the raise, refuses those after, and lands none it refused', async () => {
  const old = engine.openVolume('vol', { epoch: 0 });
  const events: string[] = [];
  const write = (block: number) =>
    old.write(block * BLOCK, Buffer.alloc(BLOCK, 0xee), false).then(
      () => events.push(`ack ${block}`),
      (err: { errno?: string }) => events.push(`${err.errno} ${block}`),
    );
  const before = Array.from({ length: 100 }, (_, block) => write(block));
  const raise = engine.raiseEpoch('vol', 1).then(() => events.push('raised'));
  const after = Array.from({ length: 100 }, (_, i) => write(100 + i));
  await Promise.all([...before, raise, ...after]);

  const raisedAt = events.indexOf('raised');
  expect(events.slice(0, raisedAt).sort()).toEqual(Array.from({ length: 100 }, (_, block) => `ack ${block}`).sort());
  expect(events.slice(raisedAt + 1).sort()).toEqual(Array.from({ length: 100 }, (_, i) => `EPERM ${100 + i}`).sort());
  const reader = engine.openVolume('vol');
  expect((await reader.read(0, 100 * BLOCK)).equals(Buffer.alloc(100 * BLOCK, 0xee))).toBe(true);
  expect((await reader.read(100 * BLOCK, 100 * BLOCK)).equals(Buffer.alloc(100 * BLOCK))).toBe(true);
  reader.close();
  old.close();
});
