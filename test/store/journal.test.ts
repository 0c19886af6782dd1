// The metadata journal on its own (fabric/store/journal.ts): its frame format as read back from the
// file, growth in 1 MiB chunks of zeroes, records kept until a sync made them durable (through the
// fault-injecting file layer), and Journal.read telling damage from a torn tail.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32 } from 'zlib';
import { Journal, JOURNAL_CHUNK_BYTES } from '../../fabric/store/journal';
import { FaultyFileOps } from '../helpers/faulty-fs';
import { FileOpsRecorder } from '../helpers/file-ops-recorder';
import { Prng } from '../helpers/prng';

const HEADER_BYTES = 20;

let dir: string;
let file: string;
let journal: Journal | undefined;
let faults: FaultyFileOps | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-journal-'));
  file = path.join(dir, 'journal');
});

afterEach(() => {
  faults?.uninstall();
  faults = undefined;
  journal?.close();
  journal = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Appends one record holding text. */
function append(j: Journal, text: string): void {
  const data = Buffer.from(text);
  const { buf, pos } = j.reserve(data.length);
  data.copy(buf, pos);
}

/** Faults on the journal file only, for the calls given. */
function injectFaults(calls: ('write' | 'sync')[]): FaultyFileOps {
  faults = new FaultyFileOps(new Prng(1)).install();
  faults.affects = (f) => f === file;
  faults.calls = new Set(calls);
  return faults;
}

const texts = (frames: Buffer[]) => frames.map((f) => f.toString());
/** Bytes a frame of this payload takes in the file. */
const frameBytes = (text: string) => HEADER_BYTES + Buffer.byteLength(text);

/** Flips one bit of the byte at offset, behind the journal's back. */
function damageByte(offset: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, offset);
  b[0] ^= 0x01;
  fs.writeSync(fd, b, 0, 1, offset);
  fs.closeSync(fd);
}

describe('frames in the file', () => {
  test('each write-out is one frame: magic, length, durable offset and CRC-32 of header and payload', async () => {
    journal = Journal.create(file);
    expect(fs.statSync(file).size).toBe(JOURNAL_CHUNK_BYTES);
    expect(fs.readFileSync(file).every((b) => b === 0)).toBe(true);

    append(journal, 'abc');
    append(journal, 'de'); // same turn of the event loop: same frame
    await journal.sync();
    append(journal, 'fgh');
    await journal.writeOut();

    const data = fs.readFileSync(file);
    expect(data.length).toBe(JOURNAL_CHUNK_BYTES);
    const first = data.subarray(0, HEADER_BYTES + 5);
    expect(first.readUInt32LE(0)).toBe(0x4a544657);
    expect(first.readUInt32LE(4)).toBe(5);
    expect(first.readBigUInt64LE(8)).toBe(0n); // nothing durable when it was sealed
    expect(first.readUInt32LE(16)).toBe(crc32(first.subarray(HEADER_BYTES), crc32(first.subarray(0, 16))));
    expect(first.subarray(HEADER_BYTES).toString()).toBe('abcde');
    const second = data.subarray(first.length, first.length + HEADER_BYTES + 3);
    expect(second.readUInt32LE(4)).toBe(3);
    expect(Number(second.readBigUInt64LE(8))).toBe(first.length); // the first frame had been synced
    expect(second.subarray(HEADER_BYTES).toString()).toBe('fgh');
    expect(data.subarray(first.length + second.length).every((b) => b === 0)).toBe(true);

    const read = Journal.read(file);
    expect(texts(read.frames)).toEqual(['abcde', 'fgh']);
    expect(read).toMatchObject({ end: first.length + second.length, syncedUpTo: first.length, framesAfterDamage: [] });
    expect(read.damage).toBeUndefined();
    expect(read.tornTail).toBeUndefined();
  });

  test('the file grows in whole 1 MiB chunks of zeroes', async () => {
    journal = Journal.create(file);
    const big = 'x'.repeat(JOURNAL_CHUNK_BYTES + 1000);
    append(journal, big);
    await journal.sync();
    expect(fs.statSync(file).size).toBe(2 * JOURNAL_CHUNK_BYTES);
    const data = fs.readFileSync(file);
    expect(data.subarray(frameBytes(big)).every((b) => b === 0)).toBe(true);
    expect(texts(Journal.read(file).frames)).toEqual([big]);
  });

  test('sizeBytes counts every record, pendingBytes those no sync made durable', async () => {
    journal = Journal.create(file);
    append(journal, 'abc');
    expect(journal.pendingBytes).toBe(3);
    await journal.writeOut();
    expect(journal.pendingBytes).toBe(frameBytes('abc')); // written, not synced
    await journal.sync();
    expect(journal.pendingBytes).toBe(0);
    expect(journal.sizeBytes).toBe(frameBytes('abc'));
  });
});

describe('records stay in memory until a sync made them durable', () => {
  test('a failed write is retried, in order, by the next write-out', async () => {
    journal = Journal.create(file);
    const f = injectFaults(['write']);
    append(journal, 'first');
    f.failNext('EIO');
    await expect(journal.writeOut()).rejects.toMatchObject({ code: 'EIO' });
    expect(Journal.read(file).frames).toEqual([]);
    append(journal, 'second');
    await journal.writeOut();
    expect(texts(Journal.read(file).frames)).toEqual(['first', 'second']);
  });

  test('a write-out cut short by a full disk counts the bytes that reached the file (writtenBytes)', async () => {
    journal = Journal.create(file);
    const f = injectFaults(['write']);
    append(journal, 'first');
    f.failNext('EIO');
    await expect(journal.writeOut()).rejects.toMatchObject({ code: 'EIO' }); // 'first' is a frame in memory
    const mark = journal.appendMark;
    append(journal, 'second');
    f.roomEndsAt = frameBytes('first'); // room for the first frame only
    await expect(journal.writeOut()).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(texts(Journal.read(file).frames)).toEqual(['first']);
    expect(journal.writtenBytes).toBe(frameBytes('first'));
    expect(journal.writtenBytes > mark).toBe(false); // the second record has not reached the file
    f.roomEndsAt = Infinity;
    await journal.sync();
    expect(texts(Journal.read(file).frames)).toEqual(['first', 'second']);
  });

  test('records that never reached the file are sealed into one frame on request: a later write tears them all or none', async () => {
    journal = Journal.create(file);
    const f = injectFaults(['write']);
    append(journal, 'before');
    await journal.writeOut();
    const mark = journal.appendMark;
    append(journal, 'record');
    f.failNext('ENOSPC');
    await expect(journal.writeOut()).rejects.toMatchObject({ code: 'ENOSPC' }); // a frame in memory
    append(journal, 'cancel');
    expect(journal.sealTogetherFrom(mark)).toBe(true);
    await journal.writeOut();
    expect(texts(Journal.read(file).frames)).toEqual(['before', 'recordcancel']);
    // Torn by a power cut in its last byte: neither record is read back.
    damageByte(frameBytes('before') + frameBytes('recordcancel') - 1);
    expect(texts(Journal.read(file).frames)).toEqual(['before']);
    // Once part of them reached the file, they cannot be: the file may keep that part.
    const next = journal.appendMark;
    append(journal, 'late');
    await journal.writeOut();
    append(journal, 'later');
    expect(journal.sealTogetherFrom(next)).toBe(false);
  });

  test('while the disk is full nothing syncs; once it has room, one sync makes every record durable', async () => {
    journal = Journal.create(file);
    const f = injectFaults(['write', 'sync']);
    f.diskFull = true;
    append(journal, 'a');
    await expect(journal.sync()).rejects.toMatchObject({ code: 'ENOSPC' });
    append(journal, 'big'.repeat(JOURNAL_CHUNK_BYTES / 2)); // needs the file to grow
    await expect(journal.sync()).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(fs.statSync(file).size).toBe(JOURNAL_CHUNK_BYTES);
    f.heal();
    await journal.sync();
    expect(journal.pendingBytes).toBe(0);
    expect(texts(Journal.read(file).frames)).toEqual(['a', 'big'.repeat(JOURNAL_CHUNK_BYTES / 2)]);
  });

  test('past its limit of bytes waiting for a sync that keeps failing, write-outs fail; once syncs work, one sync makes every record durable', async () => {
    const limit = 64 * 1024;
    journal = Journal.create(file, limit);
    const f = injectFaults(['sync']);
    f.diskFull = true;
    const record = (i: number) => `record ${i} `.padEnd(1000, '.');
    const count = 200; // three times the limit
    const failed: string[] = [];
    for (let i = 0; i < count; i++) {
      append(journal, record(i));
      await journal.writeOut().catch((err: Error) => failed.push(err.message));
    }
    expect(failed.length).toBeGreaterThan(100);
    expect(failed[0]).toMatch(/bytes wait for a sync that keeps failing/);
    await expect(journal.sync()).rejects.toMatchObject({ code: 'ENOSPC' });
    f.heal();
    await journal.sync();
    expect(journal.pendingBytes).toBe(0);
    expect(texts(Journal.read(file).frames).join('')).toBe(Array.from({ length: count }, (_, i) => record(i)).join(''));
    append(journal, 'after');
    await journal.sync();
    expect(texts(Journal.read(file).frames).at(-1)).toBe('after');
  });

  test('after a failed fdatasync every byte since the last good sync is written again before a sync succeeds', async () => {
    journal = Journal.create(file);
    append(journal, 'synced');
    await journal.sync();
    const f = injectFaults(['sync']);
    append(journal, 'lost-by-the-kernel');
    f.failNext('EIO');
    await expect(journal.sync()).rejects.toMatchObject({ code: 'EIO' });
    // What the kernel may do after a failed fsync: drop the dirty pages and mark them clean. Here
    // the bytes written since the good sync go back to zeroes.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(frameBytes('lost-by-the-kernel')), 0, frameBytes('lost-by-the-kernel'), frameBytes('synced'));
    fs.closeSync(fd);

    append(journal, 'after');
    await journal.sync();
    const read = Journal.read(file);
    expect(texts(read.frames)).toEqual(['synced', 'lost-by-the-kernel', 'after']);
    expect(read.tornTail).toBeUndefined();
  });

  test('a sync covers what was written when it started; bytes written while it ran wait for the next', async () => {
    journal = Journal.create(file);
    const recorder = FileOpsRecorder.install();
    try {
      const gate = recorder.hold((call) => call === 'fdatasync');
      append(journal, 'one');
      const first = journal.sync();
      await gate.whenHeld();
      append(journal, 'two');
      await journal.writeOut();
      gate.release();
      await first;
      expect(journal.pendingBytes).toBe(frameBytes('two'));
      append(journal, 'three');
      await journal.sync();
    } finally {
      recorder.uninstall();
    }
    const data = fs.readFileSync(file);
    // 'two' was sealed while nothing was durable; 'three' after the sync of 'one' only.
    expect(Number(data.readBigUInt64LE(frameBytes('one') + 8))).toBe(0);
    expect(Number(data.readBigUInt64LE(frameBytes('one') + frameBytes('two') + 8))).toBe(frameBytes('one'));
    expect(texts(Journal.read(file).frames)).toEqual(['one', 'two', 'three']);
  });
});

describe('Journal.read', () => {
  /** A journal of frames a, b, c; `synced` says after which of them a sync ran. */
  async function writeFrames(synced: ('a' | 'b' | 'c')[]): Promise<void> {
    journal = Journal.create(file);
    for (const text of ['a', 'b', 'c'] as const) {
      append(journal, text);
      await (synced.includes(text) ? journal.sync() : journal.writeOut());
    }
    journal.close();
    journal = undefined;
  }
  const startOfB = frameBytes('a');
  const startOfC = 2 * frameBytes('a');

  test('a bad frame that a later frame proves synced is damage, with its offset and what follows', async () => {
    await writeFrames(['a', 'b', 'c']);
    damageByte(startOfB + HEADER_BYTES); // b's payload
    const read = Journal.read(file);
    expect(texts(read.frames)).toEqual(['a']);
    expect(read.damage).toMatchObject({ file, offset: startOfB, reason: expect.stringContaining('checksum') });
    expect(texts(read.framesAfterDamage)).toEqual(['c']);
    expect(read.tornTail).toBeUndefined();
    expect(read.end).toBe(startOfB);
  });

  test('a bad frame that no later frame proves synced is a torn tail', async () => {
    await writeFrames(['a']); // c was sealed when only a was durable: no proof for b
    damageByte(startOfB + 4); // b's length
    const read = Journal.read(file);
    expect(texts(read.frames)).toEqual(['a']);
    expect(read.damage).toBeUndefined();
    expect(read.framesAfterDamage).toEqual([]);
    expect(read.tornTail).toEqual({ offset: startOfB, bytes: 2 * frameBytes('a') });
    expect(read.syncedUpTo).toBe(startOfB);
  });

  test('a torn last frame is a torn tail', async () => {
    await writeFrames(['a', 'b']);
    damageByte(startOfC + HEADER_BYTES);
    const read = Journal.read(file);
    expect(texts(read.frames)).toEqual(['a', 'b']);
    expect(read.tornTail).toEqual({ offset: startOfC, bytes: frameBytes('c') });
    expect(read.damage).toBeUndefined();
  });

  test.each([
    ['cut short', JOURNAL_CHUNK_BYTES / 2],
    ['emptied', 0],
  ])('a file %s behind its back is damage', async (_how, bytes) => {
    await writeFrames(['a', 'b', 'c']);
    fs.truncateSync(file, bytes);
    const read = Journal.read(file);
    expect(read.frames).toEqual([]);
    expect(read.damage).toMatchObject({ file, offset: bytes, reason: expect.stringContaining('cut short') });
  });
});

describe.each([
  ['create', async (f: string) => Journal.create(f)],
  ['createAsync', (f: string) => Journal.createAsync(f)],
])('Journal.%s', (_name, create) => {
  test('replaces a journal with one chunk of zeroes, leaving no temporary file', async () => {
    journal = Journal.create(file);
    append(journal, 'old');
    await journal.sync();
    journal.close();
    journal = await create(file);
    expect(fs.readdirSync(dir)).toEqual(['journal']);
    const read = Journal.read(file);
    expect(read).toMatchObject({ frames: [], end: 0, syncedUpTo: 0 });
    expect(fs.statSync(file).size).toBe(JOURNAL_CHUNK_BYTES);
    append(journal, 'new');
    await journal.sync();
    expect(texts(Journal.read(file).frames)).toEqual(['new']);
  });

  test('a sync that fails leaves the old journal whole and no temporary file', async () => {
    journal = Journal.create(file);
    append(journal, 'old');
    await journal.sync();
    journal.close();
    journal = undefined;
    const f = injectFaults(['sync']);
    f.affects = (p) => p === `${file}.tmp`;
    f.failNext('EIO');
    await expect(create(file)).rejects.toMatchObject({ code: 'EIO' });
    expect(fs.readdirSync(dir)).toEqual(['journal']);
    expect(texts(Journal.read(file).frames)).toEqual(['old']);
  });
});
