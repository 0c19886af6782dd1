// A checkpoint written while I/O goes on (issue 8): changes recorded and applied while it is being
// written survive a power cut at every step of it, a failed one loses nothing and the next one
// works, and what it writes is the state of its cut. The metadata runs in this process over a
// power-cut (or fault-injecting) file layer; "crashing" closes it and puts back every page that
// no sync made durable.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Journal } from '../../fabric/store/journal';
import { Metadata } from '../../fabric/volume/metadata';
import { MetadataDamaged } from '../../fabric/volume/metadata-damaged';
import { reportLoss } from '../../fabric/volume/metadata-recovery';
import { inspectMetadata } from '../../fabric/volume/metadata-state';
import { FaultyFileOps } from '../helpers/faulty-fs';
import { PowerCutFileOps, simulatePowerCut } from '../helpers/power-cut-fs';
import { Prng } from '../helpers/prng';

const LAYER = 7;

let dir: string;
let meta: string;
let log: string;
let layer: PowerCutFileOps | FaultyFileOps | undefined;
let metadata: Metadata | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-checkpoint-'));
  meta = path.join(dir, 'meta');
  log = path.join(dir, 'power-cut.log');
});

afterEach(() => {
  metadata?.close();
  metadata = undefined;
  layer?.uninstall();
  layer = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** New metadata with one layer, as the engine leaves it after a start: a clean journal. */
async function fresh(): Promise<Metadata> {
  Metadata.initialize(meta);
  const m = Metadata.open(meta).metadata;
  m.checkpoint();
  const record = { id: LAYER, pool: 'default', parent: null };
  m.recordControl([{ kind: 'layer', key: String(LAYER), value: record }], []);
  m.catalog.layers.push(record);
  await m.sync();
  metadata = m;
  return m;
}

/** A write as the I/O path makes it: its record first, its map entry after. Returns its seq. */
function write(m: Metadata, block: number): number {
  const seq = m.recordMap(LAYER, block, 1000 + block, block);
  m.mapOf(LAYER).set(block, 1000 + block, block);
  return seq;
}

/** Writes blocks [first, first + count) and makes them durable: a FLUSH. */
async function flushed(m: Metadata, first: number, count: number): Promise<void> {
  for (let b = first; b < first + count; b++) write(m, b);
  m.recordSync(m.lastSeq);
  await m.sync();
}

/** The process dies and the machine loses power: what no sync made durable is gone. */
function powerCut(): void {
  metadata?.close();
  metadata = undefined;
  layer?.uninstall();
  layer = undefined;
  simulatePowerCut(log);
}

function reopen() {
  const opened = Metadata.open(meta);
  metadata = opened.metadata;
  return opened;
}

/** The blocks of the layer that hold what write() put there. */
function blocksOf(m: Metadata): number[] {
  const blocks: number[] = [];
  m.mapOf(LAYER).forEach((block, value) => {
    if (value === 1000 + block) blocks.push(block);
  });
  return blocks.sort((a, b) => a - b);
}

const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);
const journals = () => fs.readdirSync(meta).filter((n) => n.startsWith('journal-')).sort();

describe.each(['before finish', 'after the old journal is synced', 'after the rename', 'after the old journal is deleted'])(
  'a power cut %s',
  (point) => {
    test('keeps every change flushed before and during the checkpoint, with consistent numbers', async () => {
      const m = await fresh();
      layer = new PowerCutFileOps(log).install();
      await flushed(m, 0, 10);
      for (let b = 10; b < 20; b++) write(m, b); // in the old journal, not yet synced
      const cut = m.startCheckpoint();
      await flushed(m, 20, 10); // in the new journal: its sync makes the old one durable first
      const oldJournal = path.join(meta, journals()[0]);
      let oldCopy: Buffer | undefined;
      const finished =
        point === 'before finish'
          ? Promise.resolve()
          : cut.finish(async () => {
              // Here the engine syncs the pools; writes go on meanwhile.
              oldCopy = fs.readFileSync(oldJournal);
              await flushed(m, 30, 10);
              if (point === 'after the old journal is synced') throw new Error('power cut');
            });
      await finished.catch(() => undefined);
      // Between the rename and the deletion: the old journal is still there.
      if (point === 'after the rename') fs.writeFileSync(oldJournal, oldCopy!);
      const synced = write(m, 40); // durable, but no SYNC record covers its data
      await m.sync();
      write(m, 50); // never synced: lost
      await m.writeOut();
      powerCut();

      const { metadata: after, unsynced } = reopen();
      const expected = [...range(0, 30), 40, ...(point === 'before finish' ? [] : range(30, 10))].sort((a, b) => a - b);
      expect(blocksOf(after)).toEqual(expected);
      expect(unsynced.map((c) => [c.seq, c.block])).toEqual([[synced, 40]]);
      expect(after.lastSeq).toBe(synced);
      // And it goes on: a new checkpoint, more writes, another restart.
      after.checkpoint();
      await flushed(after, 60, 5);
      powerCut();
      expect(blocksOf(reopen().metadata)).toEqual([...expected, ...range(60, 5)]);
      expect(journals()).toHaveLength(1);
    });
  },
);

describe('a checkpoint that fails', () => {
  test.each([
    ['ENOSPC on the checkpoint file', (f: FaultyFileOps) => (f.diskFull = true), /ENOSPC/],
    ['EIO on its sync', (f: FaultyFileOps) => ((f.calls = new Set(['sync'])), f.failNext('EIO')), /EIO/],
  ])('(%s) loses nothing, and the next one works', async (_name, inject, message) => {
    const m = await fresh();
    const faults = new FaultyFileOps(new Prng(8)).install();
    layer = faults;
    faults.affects = (file) => file.endsWith('/checkpoint.tmp');
    await flushed(m, 0, 10);
    inject(faults);
    const cut = m.startCheckpoint();
    await flushed(m, 10, 10);
    await expect(cut.finish(async () => undefined)).rejects.toThrow(message);
    expect(fs.existsSync(path.join(meta, 'checkpoint.tmp'))).toBe(false);
    expect(journals()).toHaveLength(2);
    await flushed(m, 20, 10);
    faults.heal();
    const next = m.startCheckpoint();
    await flushed(m, 30, 10);
    await next.finish(async () => undefined);
    expect(journals()).toHaveLength(1);
    await flushed(m, 40, 10);
    m.close();
    expect(blocksOf(reopen().metadata)).toEqual(range(0, 50));
  });

  test('over and over (a full disk): only the current journal stays open, the older ones still count, and all are replayed', async () => {
    const m = await fresh();
    const target = (fd: string) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return ''; // the descriptor readdir itself used
      }
    };
    const openJournals = () => fs.readdirSync('/proc/self/fd').filter((fd) => /\/journal-\d+$/.test(target(fd))).length;
    for (let attempt = 0; attempt < 6; attempt++) {
      const cut = m.startCheckpoint();
      await flushed(m, attempt * 5, 5);
      await expect(cut.finish(() => Promise.reject(new Error('ENOSPC: no space left on device')))).rejects.toThrow('ENOSPC');
    }
    expect(journals()).toHaveLength(7);
    expect(openJournals()).toBe(1); // each kept open held 2 MiB of buffers too
    const framed = (name: string) => Journal.read(path.join(meta, name)).frames.reduce((sum, f) => sum + 20 + f.length, 0);
    expect(m.journalBytes).toBe(journals().reduce((sum, name) => sum + framed(name), 0)); // what makes the next checkpoint due
    m.close();
    metadata = undefined;
    expect(blocksOf(reopen().metadata)).toEqual(range(0, 30));
  });

  test('over and over at the old journal (its disk full): no next journal is made while it cannot be made durable, and all is replayed once there is room', async () => {
    const m = await fresh();
    const old = journals()[0];
    for (let b = 0; b < 5; b++) write(m, b); // in the page cache, not durable: the cut leaves them to the old journal
    await m.writeOut();
    const faults = new FaultyFileOps(new Prng(9)).install();
    layer = faults;
    faults.affects = (file) => file.endsWith(`/${old}`); // a new journal is sparse: made even on a full disk
    faults.diskFull = true;
    const attempt = async () => {
      await m.prepareCheckpoint();
      await m.startCheckpoint().finish(async () => undefined);
    };
    for (let i = 0; i < 5; i++) await expect(attempt()).rejects.toThrow('ENOSPC');
    expect(journals()).toHaveLength(2); // one more each time, with 2 MiB of buffers and a descriptor, before
    faults.heal();
    await attempt();
    expect(journals()).toHaveLength(1);
    m.close();
    metadata = undefined;
    expect(blocksOf(reopen().metadata)).toEqual(range(0, 5));
  });

  test('a FLUSH that comes while the checkpoint syncs the old journal succeeds, though the old journal is closed after that sync', async () => {
    const m = await fresh();
    for (let attempt = 0; attempt < 2; attempt++) {
      for (let b = attempt * 10; b < attempt * 10 + 10; b++) write(m, b); // not yet durable: the cut moves them to the old journal
      const cut = m.startCheckpoint();
      const finishing = cut.finish(() => Promise.reject(new Error('ENOSPC: no space left on device')));
      write(m, 100 + attempt);
      m.recordSync(m.lastSeq);
      const flush = m.sync(); // queued behind the checkpoint's sync of the old journal
      await expect(finishing).rejects.toThrow('ENOSPC');
      await expect(flush).resolves.toBeUndefined();
    }
    m.close();
    metadata = undefined;
    expect(blocksOf(reopen().metadata)).toEqual([...range(0, 20), 100, 101]);
  });

  test('twice, then a power cut: the checkpoint and all three journals are replayed in order', async () => {
    const m = await fresh();
    layer = new PowerCutFileOps(log).install();
    await flushed(m, 0, 5);
    for (let attempt = 0; attempt < 2; attempt++) {
      const cut = m.startCheckpoint();
      await flushed(m, 5 + attempt * 5, 5);
      await expect(cut.finish(() => Promise.reject(new Error('pool sync failed')))).rejects.toThrow('pool sync failed');
    }
    expect(journals()).toHaveLength(3);
    powerCut();
    const { metadata: after, unsynced } = reopen();
    expect(blocksOf(after)).toEqual(range(0, 15));
    expect(unsynced).toEqual([]);
  });
});

test('the checkpoint holds the state of its cut: later changes are not in it, but in the new journal', async () => {
  const m = await fresh();
  await flushed(m, 0, 4);
  const cut = m.startCheckpoint();
  m.recordMap(LAYER, 0, 2000, 1);
  m.mapOf(LAYER).set(0, 2000, 1);
  write(m, 9);
  m.recordSync(m.lastSeq);
  await cut.finish(() => m.sync());
  const { checkpoint } = inspectMetadata(meta);
  expect(checkpoint!.baseSeq).toBe(cut.cutSeq);
  expect(checkpoint!.maps.get(LAYER)!.value(0)).toBe(1000);
  expect(checkpoint!.maps.get(LAYER)!.value(9)).toBe(0);
  m.close();
  const after = reopen().metadata;
  expect(after.mapOf(LAYER).value(0)).toBe(2000);
  expect(blocksOf(after)).toEqual([1, 2, 3, 9]);
});

describe('journals after an incomplete one', () => {
  /**
   * Metadata whose checkpoint failed: journal g holds blocks 0-4 (its last frame: 4), g+1 the given
   * number of flushed blocks from 10 on, then block 20 written out but never synced.
   */
  async function twoJournals(syncsInNewer: number): Promise<string[]> {
    const m = await fresh();
    for (let b = 0; b < 5; b++) await flushed(m, b, 1);
    const cut = m.startCheckpoint();
    for (let i = 0; i < syncsInNewer; i++) await flushed(m, 10 + i, 1);
    write(m, 20);
    await m.writeOut();
    await expect(cut.finish(() => Promise.reject(new Error('pool sync failed')))).rejects.toThrow();
    m.close();
    metadata = undefined;
    return journals().map((n) => path.join(meta, n));
  }

  /** Zeroes the last frame of a journal: a tail torn by a crash (if nothing proves it synced). */
  function tearLastFrame(file: string): void {
    const { frames } = Journal.read(file);
    const end = frames.reduce((sum, f) => sum + 20 + f.length, 0);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(8), 0, 8, end - 8);
    fs.closeSync(fd);
  }

  test('one never synced is left out with the torn tail', async () => {
    const [older, newer] = await twoJournals(0);
    tearLastFrame(older);
    const { metadata: after, tornTail } = reopen();
    expect(tornTail).toMatchObject({ file: older, laterJournals: [newer] });
    expect(blocksOf(after)).toEqual(range(0, 4));
    // The engine checkpoints next: the left-out journal is replaced by a new one.
    after.checkpoint();
    after.close();
    const again = reopen();
    expect(again.tornTail).toBeUndefined();
    expect(blocksOf(again.metadata)).toEqual(range(0, 4));
    expect(journals()).toHaveLength(1);
  });

  /**
   * Three journals (two checkpoints failed): g holds blocks 0-4 flushed, g+1 block 10 flushed, and
   * g+2 what `newest` puts there; then g+1 is removed. Returns the paths of g+1 and g+2.
   */
  async function middleJournalMissing(newest: (m: Metadata) => Promise<void>): Promise<[string, string]> {
    const m = await fresh();
    for (let b = 0; b < 5; b++) await flushed(m, b, 1);
    const first = m.startCheckpoint();
    await flushed(m, 10, 1);
    await expect(first.finish(() => Promise.reject(new Error('pool sync failed')))).rejects.toThrow();
    const second = m.startCheckpoint();
    await newest(m);
    await expect(second.finish(() => Promise.reject(new Error('pool sync failed')))).rejects.toThrow();
    m.close();
    metadata = undefined;
    const [, middle, last] = journals().map((n) => path.join(meta, n));
    fs.rmSync(middle);
    return [middle, last];
  }

  test('a journal missing between two is damage when a later one was synced: refused, nothing deleted', async () => {
    const [, last] = await middleJournalMissing(async (m) => {
      await flushed(m, 11, 1);
      await flushed(m, 12, 1); // the second sync's frame proves the first durable
    });
    const before = journals();
    const state = inspectMetadata(meta);
    expect(state.problem).toBeInstanceOf(MetadataDamaged);
    expect(state.problem!.file).toBe(last);
    expect(state.problem!.message).toMatch(/synced, but the journal before it is incomplete \(.*journal-\d+ is missing\)/);
    expect(() => Metadata.open(meta)).toThrow(/synced, but the journal before it is incomplete/);
    expect(journals()).toEqual(before);
  });

  // As a crash part way through a start's removal of journals left out before left them in an
  // earlier version, which removed them oldest first (nothing in them was acknowledged, or that
  // start would have been refused).
  test('a journal missing before one never synced leaves that one out with the torn tail', async () => {
    const [middle, last] = await middleJournalMissing(async (m) => {
      write(m, 20);
      await m.writeOut();
    });
    const { metadata: after, tornTail } = reopen();
    expect(tornTail).toMatchObject({ file: middle, laterJournals: [last] });
    expect(blocksOf(after)).toEqual(range(0, 5));
  });

  test('one that was synced is damage: refused, and --recover names what would be lost', async () => {
    const [older, newer] = await twoJournals(2);
    tearLastFrame(older);
    const state = inspectMetadata(meta);
    expect(state.problem).toBeInstanceOf(MetadataDamaged);
    expect(state.problem!.file).toBe(newer);
    expect(() => Metadata.open(meta)).toThrow(/synced, but the journal before it is incomplete/);
    const { lost } = reportLoss(meta);
    expect(lost).toContain('writes to layer 7 (of a volume deleted since): 3 block(s) of 4096 bytes');
    expect(lost).toContain('2 flush(es) acknowledged after the damage');
  });
});
