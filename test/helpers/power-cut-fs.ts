// A power-cut file layer for crash tests, in the spirit of LazyFS and CrashMonkey: kill -9 keeps the
// page cache, so a test that only kills cannot tell a synced write from an unsynced one. Put under the
// engine's file calls (setFileOps), this layer keeps, per 4 KiB page of each file, the content the
// page held on disk when it was first written since its file's last sync (its pre-image) in an
// append-only side log outside the data dir. After the process is killed, simulatePowerCut() puts
// back the pre-image of every page still dirty (or of a random part of them): what a machine that lost
// power would hold.
//
// Limits, taken on purpose: directory operations (create, rename, unlink, and the truncation by
// open(..., 'w')) are durable at once, as on a file system that journals them synchronously; a file
// renamed while it has unsynced pages is not followed (the engine syncs a file before renaming it);
// truncation through ftruncateSync is durable at once. Pages are written back whole or not at all.

import * as fs from 'fs';
import { totalBytes, type Pieces } from '../../fabric/pieces';
import { FileOpsLayer } from './file-ops-layer';
import type { Prng } from './prng';

export const PAGE_BYTES = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);

/** Side log records: a header (type, file id, page or size, payload length), then the payload. */
const enum Rec {
  /** A file id names a path (payload: the path). */
  Name = 1,
  /** A page is dirty; payload: its pre-image (empty: zeroes). */
  Dirty = 2,
  /** A page is durable as it is. */
  Clean = 3,
  /** The file's durable size. */
  Size = 4,
}
const HEADER_BYTES = 17;

/** A sync of one file while it runs: the pages it makes durable if it succeeds. */
interface RunningSync {
  /**
   * Dirty pages with no write in flight when the sync started. A page written again while the sync
   * runs maps to its content at the sync's start (what the sync made durable); the others to undefined.
   */
  covers: Map<number, Buffer | undefined>;
  sizeAtStart: number;
}

interface TrackedFile {
  id: number;
  ino: number;
  /** Pages written since the file's last sync, with the content each holds on disk. */
  dirty: Map<number, Buffer>;
  /** Writes in flight, per page. */
  writing: Map<number, number>;
  syncs: Set<RunningSync>;
}

/** Passes every call on and logs, ahead of each write, what a power cut would lose. */
export class PowerCutFileOps extends FileOpsLayer {
  private readonly log: number;
  private readonly files = new Map<string, TrackedFile>();
  private nextId = 1;

  constructor(logFile: string) {
    super();
    this.log = fs.openSync(logFile, 'a');
  }

  override writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    const done = this.beginWrite(fd, position, length);
    try {
      return this.below.writeSync(fd, buf, offset, length, position);
    } finally {
      done();
    }
  }

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    const done = this.beginWrite(fd, position, totalBytes(pieces));
    try {
      return this.below.writevSync(fd, pieces, position);
    } finally {
      done();
    }
  }

  override writev(fd: number, pieces: Pieces, position: number, callback: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    const done = this.beginWrite(fd, position, totalBytes(pieces));
    this.below.writev(fd, pieces, position, (err, written) => {
      done();
      callback(err, written);
    });
  }

  override fdatasync(fd: number, callback: (err: NodeJS.ErrnoException | null) => void): void {
    const finish = this.beginSync(fd);
    this.below.fdatasync(fd, (err) => {
      if (!err) finish();
      callback(err);
    });
  }

  override fsyncSync(fd: number): void {
    const finish = this.beginSync(fd);
    this.below.fsyncSync(fd);
    finish();
  }

  override ftruncateSync(fd: number, length: number): void {
    this.below.ftruncateSync(fd, length);
    const file = this.track(fd);
    if (!file) return;
    const firstGone = Math.ceil(length / PAGE_BYTES);
    for (const page of file.dirty.keys()) {
      if (page < firstGone) continue;
      file.dirty.delete(page);
      this.append(Rec.Clean, file.id, page);
    }
    this.append(Rec.Size, file.id, length);
  }

  override uninstall(): void {
    super.uninstall();
    fs.closeSync(this.log);
  }

  /** Records the pre-image of each page the write touches; returns what to call once it completed. */
  private beginWrite(fd: number, position: number, length: number): () => void {
    const file = this.track(fd);
    if (!file || length === 0) return () => undefined;
    const first = Math.floor(position / PAGE_BYTES);
    const last = Math.floor((position + length - 1) / PAGE_BYTES);
    for (let page = first; page <= last; page++) {
      let current: Buffer | undefined;
      const content = () => (current ??= readPage(fd, page));
      for (const sync of file.syncs) if (sync.covers.has(page) && !sync.covers.get(page)) sync.covers.set(page, content());
      if (!file.dirty.has(page)) {
        file.dirty.set(page, content());
        this.append(Rec.Dirty, file.id, page, content());
      }
      file.writing.set(page, (file.writing.get(page) ?? 0) + 1);
    }
    return () => {
      for (let page = first; page <= last; page++) {
        const left = file.writing.get(page)! - 1;
        if (left === 0) file.writing.delete(page);
        else file.writing.set(page, left);
      }
    };
  }

  /**
   * Notes which pages a sync starting now covers: the dirty ones whose writes all completed. Returns
   * what to call when it succeeded.
   */
  private beginSync(fd: number): () => void {
    const file = this.track(fd);
    if (!file) return () => undefined;
    const sync: RunningSync = { covers: new Map(), sizeAtStart: fs.fstatSync(fd).size };
    for (const page of file.dirty.keys()) if (!file.writing.has(page)) sync.covers.set(page, undefined);
    file.syncs.add(sync);
    return () => {
      file.syncs.delete(sync);
      for (const [page, atStart] of sync.covers) {
        if (atStart) {
          file.dirty.set(page, atStart);
          this.append(Rec.Dirty, file.id, page, atStart);
        } else if (file.dirty.delete(page)) {
          this.append(Rec.Clean, file.id, page);
        }
      }
      this.append(Rec.Size, file.id, sync.sizeAtStart);
    };
  }

  /** The state of the regular file behind fd; undefined for a directory (durable at once). */
  private track(fd: number): TrackedFile | undefined {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return undefined;
    const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
    let tracked = this.files.get(file);
    if (!tracked || tracked.ino !== stat.ino) {
      // First seen, or a new file under the same name: what it holds now is durable.
      tracked = { id: this.nextId++, ino: stat.ino, dirty: new Map(), writing: new Map(), syncs: new Set() };
      this.files.set(file, tracked);
      this.append(Rec.Name, tracked.id, 0, Buffer.from(file));
      this.append(Rec.Size, tracked.id, stat.size);
    }
    return tracked;
  }

  /** Writes one record to the side log before the write it describes reaches the file. */
  private append(type: Rec, id: number, value: number, payload?: Buffer): void {
    const body = !payload || payload.equals(ZERO_PAGE) ? undefined : payload;
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = type;
    header.writeUInt32LE(id, 1);
    header.writeDoubleLE(value, 5);
    header.writeUInt32LE(body?.length ?? 0, 13);
    fs.writeSync(this.log, body ? Buffer.concat([header, body]) : header);
  }
}

/** A page of the file behind fd (opened anew for reading: fd may be write-only); zeroes past the end. */
function readPage(fd: number, page: number): Buffer {
  const buf = Buffer.alloc(PAGE_BYTES);
  const reader = fs.openSync(`/proc/self/fd/${fd}`, 'r');
  try {
    let done = 0;
    while (done < PAGE_BYTES) {
      const read = fs.readSync(reader, buf, done, PAGE_BYTES - done, page * PAGE_BYTES + done);
      if (read === 0) break;
      done += read;
    }
  } finally {
    fs.closeSync(reader);
  }
  return buf;
}

export interface PowerCutReport {
  files: number;
  dirtyPages: number;
  droppedPages: number;
}

interface LoggedFile {
  path: string;
  durableSize: number;
  dirty: Map<number, Buffer>;
}

/**
 * Applies a power cut to the files a killed process wrote through the layer: each page still dirty
 * gets its pre-image back (the write is lost) or keeps its new content, chosen by rng with even odds;
 * without rng every dirty page is lost. A file that grew keeps only the length that became durable
 * or that a kept page needs. The side log is removed afterwards (a new process starts a new one).
 */
export function simulatePowerCut(logFile: string, rng?: Prng): PowerCutReport {
  const report: PowerCutReport = { files: 0, dirtyPages: 0, droppedPages: 0 };
  if (!fs.existsSync(logFile)) return report;
  for (const file of readLog(fs.readFileSync(logFile))) {
    if (!fs.existsSync(file.path) || file.dirty.size === 0) continue;
    report.files++;
    const fd = fs.openSync(file.path, 'r+');
    try {
      const size = fs.fstatSync(fd).size;
      let finalSize = Math.min(size, file.durableSize);
      for (const [page, preImage] of file.dirty) {
        report.dirtyPages++;
        const start = page * PAGE_BYTES;
        if (start >= size) continue;
        if (rng?.chance(0.5)) {
          finalSize = Math.max(finalSize, Math.min(size, start + PAGE_BYTES));
          continue;
        }
        report.droppedPages++;
        fs.writeSync(fd, preImage, 0, Math.min(PAGE_BYTES, size - start), start);
      }
      if (finalSize < size) fs.ftruncateSync(fd, finalSize);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  fs.rmSync(logFile);
  return report;
}

/** The state the side log ends in, per path (the latest file of that name); a torn last record is ignored. */
function readLog(log: Buffer): LoggedFile[] {
  const byId = new Map<number, LoggedFile>();
  const byPath = new Map<string, LoggedFile>();
  for (let pos = 0; pos + HEADER_BYTES <= log.length; ) {
    const type = log[pos] as Rec;
    const id = log.readUInt32LE(pos + 1);
    const value = log.readDoubleLE(pos + 5);
    const end = pos + HEADER_BYTES + log.readUInt32LE(pos + 13);
    if (end > log.length) break;
    const payload = log.subarray(pos + HEADER_BYTES, end);
    pos = end;
    if (type === Rec.Name) {
      const file: LoggedFile = { path: payload.toString(), durableSize: 0, dirty: new Map() };
      byId.set(id, file);
      byPath.set(file.path, file);
      continue;
    }
    const file = byId.get(id)!;
    if (type === Rec.Dirty) file.dirty.set(value, payload.length === 0 ? ZERO_PAGE : Buffer.from(payload));
    else if (type === Rec.Clean) file.dirty.delete(value);
    else file.durableSize = value;
  }
  return [...byPath.values()];
}
