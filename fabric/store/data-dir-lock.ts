// One weftd per data dir: DATA_DIR/LOCK is locked with flock(2) through a descriptor kept open for
// the process's life, so the kernel releases it when the process dies, even by kill -9.

import * as fs from 'fs';
import * as path from 'path';
import { failedPrecondition } from '../errors';
import { loadNativeModule } from '../native';

const native = loadNativeModule<{ tryLockExclusive(fd: number): boolean }>('weft_flock');

/** The descriptor of each data dir's LOCK that this process holds. */
const held = new Map<string, number>();

/**
 * Locks the data dir or refuses with the pid of the weftd that holds it. The pid in the file is
 * only for that message: a pid may be reused, a zombie still has one, the lock says who holds it.
 */
export function takeLock(dataDir: string): void {
  const fd = fs.openSync(path.join(dataDir, 'LOCK'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    if (!native.tryLockExclusive(fd)) {
      const pid = fs.readFileSync(fd, 'utf8').trim();
      throw failedPrecondition(`data dir ${dataDir} is in use by another weftd${pid ? ` (pid ${pid})` : ''}`);
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  held.set(dataDir, fd);
}

/**
 * Unlocks by closing the descriptor. The file stays: removing it would let a weftd that opened it
 * just before lock the removed file while a third one creates and locks a new one.
 */
export function releaseLock(dataDir: string): void {
  const fd = held.get(dataDir);
  if (fd === undefined) return;
  held.delete(dataDir);
  fs.closeSync(fd);
}
