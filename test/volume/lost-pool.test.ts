// An engine with two pools, one of which is lost while it runs (its member file deleted): the other
// pool's volumes write and flush on, and the journal, which no checkpoint may fold while a pool
// is lost, grows without a checkpoint being tried and failed over and over (each try used to leave
// a journal file and its descriptor behind). Control operations on the other pool's volumes go on too.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';

const MiB = 1024 * 1024;

/**
 * An engine in a new dir with volume va in pool a and vb in pool b, pool a lost (its member file
 * deleted) after a write to va. The caller closes the engine and removes dir.
 */
async function withPoolLost(options: Partial<Parameters<typeof LocalEngine.open>[0]>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-lost-pool-'));
  const [dirA, dirB] = ['a', 'b'].map((name) => fs.mkdirSync(path.join(dir, name), { recursive: true }) as string);
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'a', path: dirA, sizeBytes: 64 * MiB }, { class: 'b', path: dirB, sizeBytes: 256 * MiB }],
    logger: pino({ level: 'silent' }),
    ...options,
  });
  await engine.createVolume({ name: 'va', sizeBytes: 16 * MiB, class: 'a' });
  await engine.createVolume({ name: 'vb', sizeBytes: 128 * MiB, class: 'b' });
  const [va, vb] = [engine.openVolume('va'), engine.openVolume('vb')];
  await va.write(0, Buffer.alloc(64 * 1024, 1), false);
  fs.rmSync(path.join(dirA, 'weft-pool-a.img'));
  await expect(va.flush()).rejects.toThrow(/pool a: member .* while weftd ran/);
  return { dir, engine, va, vb };
}

test('with a pool lost, checkpoints are held (said once), and the other pool\'s writes and flushes go on', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const { dir, engine, va, vb } = await withPoolLost({ logger, checkpointJournalBytes: 16 * 1024 });
  try {
    const journals = () => fs.readdirSync(path.join(dir, 'data', 'meta')).filter((f) => f.startsWith('journal-'));
    const before = journals();
    // Each 1 MiB of new blocks journals a run of 256 checksums: well past the 16 KiB that makes a checkpoint due.
    for (let i = 0; i < 64; i++) await vb.write(i * MiB, Buffer.alloc(MiB, i + 1), false);
    await vb.flush();
    await new Promise((resolve) => setTimeout(resolve, 3500)); // three turns of the engine's background work
    await vb.flush();

    expect(journals()).toEqual(before);
    const log = lines.join('');
    expect(log.match(/checkpoints are held until weftd restarts/g)).toHaveLength(1);
    expect(log).not.toMatch(/checkpoint failed|background sync failed/);
    expect((await vb.read(63 * MiB, 4096)).equals(Buffer.alloc(4096, 64))).toBe(true);
    expect(engine.listPools().map((p) => `${p.class}:${p.state}`)).toEqual(['a:lost', 'b:ok']);
    va.close();
    vb.close();
  } finally {
    await engine.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('shutting down with a pool lost drains the I/O in flight first: a write on the other pool ends whole, or refused, never on closed files', async () => {
  const { dir, engine, va, vb } = await withPoolLost({});
  try {
    const writes = Array.from({ length: 8 }, (_, i) => vb.write(i * 8 * MiB, Buffer.alloc(8 * MiB, i + 1), false).then(() => 'done', (err: Error) => err.message));
    await expect(engine.close()).rejects.toThrow(/pool a/);
    for (const outcome of await Promise.all(writes)) expect(outcome).toMatch(/^done$|shutting down|ESHUTDOWN/);
    va.close();
    vb.close();
  } finally {
    await engine.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("with a pool lost, the other pool's control operations go on; a snapshot of the lost pool's volume is refused, changing nothing", async () => {
  const { dir, engine, va, vb } = await withPoolLost({});
  try {
    await engine.createVolume({ name: 'vc', sizeBytes: 16 * MiB, class: 'b' });
    await vb.write(0, Buffer.alloc(64 * 1024, 7), false);
    await engine.createSnapshot('vb', 'kept');
    await engine.cloneVolume({ volume: 'vb', snapshot: 'kept', name: 'vclone' });
    await engine.deleteVolume('vc');
    await expect(engine.createSnapshot('va', 'refused')).rejects.toThrow(/pool a: member .* while weftd ran/);
    expect(engine.listSnapshots().map((s) => `${s.volume}@${s.name}`)).toEqual(['vb@kept']);
    expect(engine.listVolumes().map((v) => v.name).sort()).toEqual(['va', 'vb', 'vclone']);
    const clone = engine.openVolume('vclone');
    expect((await clone.read(0, 64 * 1024)).equals(Buffer.alloc(64 * 1024, 7))).toBe(true);
    clone.close();
    // Deleting a volume of the lost pool needs none of its data.
    va.close();
    await engine.deleteVolume('va');
    expect(engine.listVolumes().map((v) => v.name).sort()).toEqual(['vb', 'vclone']);
    vb.close();
  } finally {
    await engine.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
