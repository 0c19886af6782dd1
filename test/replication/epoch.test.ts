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

it('a stale raise is refused before it closes the gate of fenced writes (it held them for the read lease, then a pool sync)', async () => {
  await engine.raiseEpoch('vol', 3);
  const fence = engine.fence('vol');
  fence.vouch(); // a change was just taken: a raise that closes the gate holds it for 500 ms
  const raise = engine.raiseEpoch('vol', 2);
  expect(fence.gate.paused).toBe(false);
  await expect(raise).rejects.toThrow('volume vol is at epoch 3; its epoch cannot go back to 2');
  expect(engine.getVolume('vol').epoch).toBe(3);
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

// A primary's control operation on a copy (snapshot, resize, revert: ClusterVolumes.controlCopy, and
// the primary's own copy in VolumeRunner.applyEverywhere) runs under the fence, as its writes do:
// checked apart from it, an operation whose check passed just before a newer primary's raise would
// run after the raise, on a copy the newer primary serves (a late revert wiping what it resyncs).
it("a control operation of an older primary is refused once a raise under way commits, and a raise waits for one under way", async () => {
  const fence = engine.fence('vol');
  const stale = (current: number) => new Error(`fenced: the copy is at epoch ${current}`);
  fence.vouch(); // a change was just taken: the raise holds the gate for its read lease (500 ms)
  const raise = engine.raiseEpoch('vol', 1);
  await expect(fence.controlAt(0, () => engine.createSnapshot('vol', 'late'), stale)).rejects.toThrow('fenced: the copy is at epoch 1');
  await raise;
  expect(engine.listSnapshots('vol')).toEqual([]);

  let finish!: () => void;
  const running = fence.controlAt(1, () => new Promise<void>((resolve) => (finish = resolve)), stale);
  let raised = false;
  const next = engine.raiseEpoch('vol', 2).then(() => (raised = true));
  await new Promise((resolve) => setTimeout(resolve, 700)); // past any read lease
  expect(raised).toBe(false);
  finish();
  await running;
  await next;
  expect(engine.getVolume('vol').epoch).toBe(2);
  await expect(fence.controlAt(1, () => engine.createSnapshot('vol', 'later'), stale)).rejects.toThrow('fenced: the copy is at epoch 2');
  await fence.controlAt(2, () => engine.createSnapshot('vol', 'current'), stale);
  expect(engine.listSnapshots('vol').map((s) => s.name)).toEqual(['current']);
});
