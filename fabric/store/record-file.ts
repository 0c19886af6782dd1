// A small record (a few KiB of JSON) kept durably in place: one pwrite and one fdatasync per save.
// Two slots take turns, each with a sequence number and a CRC-32C, so a torn or failed save
// damages only the slot it was writing; the other still holds the record before it. Reading takes
// the valid slot with the higher sequence number.
//
// Why not a temp file renamed over the old one: the records kept this way (the activity logs) are
// saved on the write path, before a write to a new extent is sent, and the rename and the
// directory's fsync cost journal commits, which under a node's write load took 3-10 ms on average
// and up to 180 ms here. An overwrite in place needs no commit. The fdatasync stays off the event
// loop (in libuv's thread pool, behind the data writes queued there): done on it, saves took
// 1-2 ms instead of 5-8, but stalled every volume of the node for up to 8 ms each, and for as long
// as a slow disk takes.

import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from './checksum';
import { fdatasync, fsyncDirAsync, preadAllSync, pwriteAllSync } from './file-io';

const MAGIC = 0x57524543; // "WREC"
/** magic u32, crc u32 (of what follows it), sequence u64, payload length u32. */
const HEADER_BYTES = 20;
/** Room for one slot, header included; the second slot starts here. */
export const RECORD_SLOT_BYTES = 1024 * 1024;

export class RecordFile {
  private saving = false;

  /**
   * fresh: no valid slot was read (no file, both slots damaged, or the file could not be read). The
   * first save then starts the file afresh: a slot that could not be read must not outrank it.
   */
  private constructor(
    readonly file: string,
    private sequence: number,
    private fresh: boolean,
    private readonly isLegacy: (value: unknown) => boolean,
  ) {}

  /**
   * The record file at file and the value it holds: undefined if it has none (missing, both slots
   * damaged, or unreadable). Without the file, a JSON file of the same name with ".json" appended
   * is read instead: the whole-file format of earlier versions, removed at the first save. Only one
   * whose value isLegacy accepts: the name may be another file's (volume "X.activity"'s absence log
   * is "X.activity.json", the old name of volume X's activity log).
   */
  static open(file: string, isLegacy: (value: unknown) => boolean): { record: RecordFile; value: unknown } {
    const newest = readNewestSlot(file);
    if (newest) return { record: new RecordFile(file, newest.sequence, false, isLegacy), value: parseJson(newest.payload) };
    const legacy = fs.existsSync(file) ? undefined : readLegacy(file, isLegacy);
    return { record: new RecordFile(file, 0, true, isLegacy), value: legacy };
  }

  /**
   * Saves value durably, in the slot that does not hold the newest record; rejects if it cannot.
   * One save at a time (its callers queue theirs: serial-save.ts).
   */
  async save(value: unknown): Promise<void> {
    if (this.saving) throw new Error(`${this.file}: a save is already under way`);
    this.saving = true;
    try {
      await this.write(value);
    } finally {
      this.saving = false;
    }
  }

  private async write(value: unknown): Promise<void> {
    const payload = Buffer.from(JSON.stringify(value));
    if (HEADER_BYTES + payload.length > RECORD_SLOT_BYTES) {
      throw new Error(`${this.file}: a record of ${payload.length} bytes does not fit in a slot of ${RECORD_SLOT_BYTES}`);
    }
    const sequence = this.sequence + 1;
    const slot = Buffer.alloc(HEADER_BYTES + payload.length);
    slot.writeUInt32LE(MAGIC, 0);
    slot.writeBigUInt64LE(BigInt(sequence), 8);
    slot.writeUInt32LE(payload.length, 16);
    payload.copy(slot, HEADER_BYTES);
    slot.writeUInt32LE(crc32c(slot.subarray(8)), 4);
    if (this.fresh) fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT | (this.fresh ? fs.constants.O_TRUNC : 0), 0o600);
    try {
      pwriteAllSync(fd, slot, (sequence % 2) * RECORD_SLOT_BYTES);
      await fdatasync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (this.fresh) {
      await fsyncDirAsync(path.dirname(this.file)); // its name, if it is new
      this.removeLegacy();
      this.fresh = false;
    }
    this.sequence = sequence;
  }

  /** Removes the file (and an earlier version's). */
  remove(): void {
    fs.rmSync(this.file, { force: true });
    this.removeLegacy();
  }

  private removeLegacy(): void {
    if (readLegacy(this.file, this.isLegacy) !== undefined) fs.rmSync(`${this.file}.json`, { force: true });
  }
}

/** The valid slot with the higher sequence number, if either is valid (none if the file cannot be read). */
function readNewestSlot(file: string): { sequence: number; payload: Buffer } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const slots = [0, 1].map((i) => readSlot(fd, i * RECORD_SLOT_BYTES)).filter((s) => s !== undefined);
    return slots.sort((a, b) => b.sequence - a.sequence)[0];
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function readSlot(fd: number, position: number): { sequence: number; payload: Buffer } | undefined {
  const header = Buffer.alloc(HEADER_BYTES);
  preadAllSync(fd, header, position);
  const length = header.readUInt32LE(16);
  if (header.readUInt32LE(0) !== MAGIC || HEADER_BYTES + length > RECORD_SLOT_BYTES) return undefined;
  const slot = Buffer.alloc(HEADER_BYTES + length);
  preadAllSync(fd, slot, position);
  if (crc32c(slot.subarray(8)) !== slot.readUInt32LE(4)) return undefined;
  return { sequence: Number(slot.readBigUInt64LE(8)), payload: slot.subarray(HEADER_BYTES) };
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined; // a valid checksum over a value that is not JSON: not ours
  }
}

function readLegacy(file: string, isLegacy: (value: unknown) => boolean): unknown {
  try {
    const value: unknown = JSON.parse(fs.readFileSync(`${file}.json`, 'utf8'));
    return isLegacy(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
