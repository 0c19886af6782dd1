// A file layer for tests that makes writes and syncs fail on chosen files, like a metadata disk that
// fills up or goes bad, and recovers when switched off (see FileOps in fabric/store/file-io.ts).

import * as fs from 'fs';
import { setFileOps, type FileOps } from '../../fabric/store/file-io';

export type FaultyCall = 'write' | 'sync';

export interface Faults {
  /** The errno the failing calls report. */
  code: 'ENOSPC' | 'EIO';
  /** Which calls fail: writes (also truncates) or syncs. */
  calls: FaultyCall[];
  /** A call fails when the path of its file contains this (e.g. "/meta/"). */
  pathContains: string;
}

function errnoError(code: Faults['code'], call: string, file: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: injected ${call} failure on ${file}`);
  err.code = code;
  return err;
}

/** Installs the layer over the current file calls; set() switches faults on (or off, with undefined). */
export function installFaultyFiles(): { set(faults: Faults | undefined): void } {
  let faults: Faults | undefined;
  const failure = (call: FaultyCall, fd: number): NodeJS.ErrnoException | undefined => {
    if (!faults || !faults.calls.includes(call)) return undefined;
    const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
    return file.includes(faults.pathContains) ? errnoError(faults.code, call, file) : undefined;
  };
  const throwIf = (err: NodeJS.ErrnoException | undefined): void => {
    if (err) throw err;
  };
  const below: FileOps = setFileOps({
    writeSync: (fd, buf, offset, length, position) => (throwIf(failure('write', fd)), below.writeSync(fd, buf, offset, length, position)),
    writevSync: (fd, pieces, position) => (throwIf(failure('write', fd)), below.writevSync(fd, pieces, position)),
    writev: (fd, pieces, position, done) => {
      const err = failure('write', fd);
      if (err) setImmediate(() => done(err, 0));
      else below.writev(fd, pieces, position, done);
    },
    fdatasync: (fd, done) => {
      const err = failure('sync', fd);
      if (err) setImmediate(() => done(err));
      else below.fdatasync(fd, done);
    },
    fsyncSync: (fd) => (throwIf(failure('sync', fd)), below.fsyncSync(fd)),
    ftruncateSync: (fd, length) => (throwIf(failure('write', fd)), below.ftruncateSync(fd, length)),
  });
  return { set: (next) => (faults = next) };
}
