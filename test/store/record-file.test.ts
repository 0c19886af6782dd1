// A small record kept in place in two slots (fabric/store/record-file.ts): what a user of it relies
// on is that after any failed or torn save the file still reads as the last record saved whole.

import fs from 'node:fs';
import path from 'node:path';
import { RECORD_SLOT_BYTES, RecordFile } from '../../fabric/store/record-file';
import { FaultyFileOps } from '../helpers/faulty-fs';
import { Prng } from '../helpers/prng';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

let file: string;
beforeEach(() => (file = path.join(makeTempDir('weft-record-'), 'sub', 'vol.record')));
afterAll(cleanupAll);

/** Takes any earlier version's FILE.json as the record's (the logs pass a check of its shape). */
const anyValue = () => true;
const valueOf = (f: string) => RecordFile.open(f, anyValue).value;

/** Overwrites two bytes of the file at position, as a torn write would leave them. */
function damage(position: number): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('xx'), 0, 2, position);
  fs.closeSync(fd);
}

test('a missing file holds nothing; each save is read back, by a new process too (a fresh open)', async () => {
  const { record, value } = RecordFile.open(file, anyValue);
  expect(value).toBeUndefined();
  for (let i = 1; i <= 5; i++) {
    await record.save({ epoch: i, extents: Array.from({ length: i }, (_, k) => k) });
    expect(valueOf(file)).toEqual({ epoch: i, extents: Array.from({ length: i }, (_, k) => k) });
  }
  // Reopened, it goes on from the newest record: the next save does not overwrite it.
  const reopened = RecordFile.open(file, anyValue).record;
  await reopened.save({ epoch: 6 });
  expect(valueOf(file)).toEqual({ epoch: 6 });
  damage(0); // the first slot's header: epoch 6 went there
  expect(valueOf(file)).toEqual({ epoch: 5, extents: [0, 1, 2, 3, 4] });
});

test('a torn save (the slot it was writing damaged) reads as the record before it', async () => {
  const { record } = RecordFile.open(file, anyValue);
  await record.save({ epoch: 1 });
  await record.save({ epoch: 2, extents: [1, 2, 3] }); // the other slot
  // Part of the newest slot's payload never reached the disk (the slots take turns from the second).
  damage(25);
  expect(valueOf(file)).toEqual({ epoch: 1 });
  // Both damaged: nothing, as a missing file; the next save starts the file afresh.
  damage(RECORD_SLOT_BYTES + 25);
  expect(valueOf(file)).toBeUndefined();
  const again = RecordFile.open(file, anyValue).record;
  await again.save({ epoch: 3 });
  expect(valueOf(file)).toEqual({ epoch: 3 });
  expect(fs.readFileSync(file).subarray(0, 64).equals(Buffer.alloc(64))).toBe(true); // the damaged slot is gone
});

test('a save whose write or sync fails rejects, and the file still reads as the record before', async () => {
  const { record } = RecordFile.open(file, anyValue);
  await record.save({ epoch: 1 });
  const faults = new FaultyFileOps(new Prng(1)).install();
  faults.affects = (f) => f === file;
  try {
    faults.failNext('EIO');
    await expect(record.save({ epoch: 2 })).rejects.toThrow(/EIO/); // the write
    expect(valueOf(file)).toEqual({ epoch: 1 });
    faults.calls = new Set(['sync']);
    faults.failNext('EIO');
    await expect(record.save({ epoch: 3 })).rejects.toThrow(/EIO/); // the fdatasync: written, maybe not durable
  } finally {
    faults.uninstall();
  }
  expect([{ epoch: 1 }, { epoch: 3 }]).toContainEqual(valueOf(file));
  // The next save takes the slot of the failed one: the last durable record stays whole meanwhile.
  await record.save({ epoch: 4 });
  expect(valueOf(file)).toEqual({ epoch: 4 });
  damage(0);
  expect(valueOf(file)).toEqual({ epoch: 1 });
});

test('a record too large for a slot is refused with a clear error and changes nothing', async () => {
  const { record } = RecordFile.open(file, anyValue);
  await record.save({ epoch: 1 });
  await expect(record.save({ extents: 'x'.repeat(RECORD_SLOT_BYTES) })).rejects.toThrow(/does not fit in a slot/);
  expect(valueOf(file)).toEqual({ epoch: 1 });
});

test('an earlier version\'s whole-file JSON (FILE.json) is read while FILE is missing, and removed at the first save', async () => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.json`, '{"epoch": 9}');
  const { record, value } = RecordFile.open(file, anyValue);
  expect(value).toEqual({ epoch: 9 });
  await record.save({ epoch: 10 });
  expect(fs.existsSync(`${file}.json`)).toBe(false);
  expect(valueOf(file)).toEqual({ epoch: 10 });
  record.remove();
  expect(fs.existsSync(file)).toBe(false);
});

test("a FILE.json that is not this record's earlier version (another file's of that name) is neither read nor removed", async () => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.json`, '{"absences": {}}'); // volume "vol.record"'s absence log, say
  const hasEpoch = (value: unknown) => typeof (value as { epoch?: unknown }).epoch === 'number';
  const { record, value } = RecordFile.open(file, hasEpoch);
  expect(value).toBeUndefined();
  await record.save({ epoch: 1 });
  record.remove();
  expect(fs.readFileSync(`${file}.json`, 'utf8')).toBe('{"absences": {}}');
});

test('one save at a time: a second one while the first is under way is refused, the first lands', async () => {
  const { record } = RecordFile.open(file, anyValue);
  const first = record.save({ epoch: 1 });
  await expect(record.save({ epoch: 2 })).rejects.toThrow(/already under way/);
  await first;
  expect(valueOf(file)).toEqual({ epoch: 1 });
});
