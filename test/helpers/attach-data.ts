// What the attach tests share: files of known content written to and checked on attached volumes,
// so that tests can tell they survived attach, detach and restarts.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Writes files of random data into dir, each fsynced, and returns their SHA-256 by name. */
export function writeFiles(dir: string, count = 3): Map<string, string> {
  const written = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const data = randomBytes(256 * 1024 + i);
    const name = `file-${i}.bin`;
    const fd = fs.openSync(path.join(dir, name), 'w');
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    written.set(name, sha256(data));
  }
  return written;
}

/** Throws unless every file in dir has the SHA-256 it had when written. */
export function expectFiles(dir: string, expected: Map<string, string>): void {
  for (const [name, hash] of expected) {
    const actual = sha256(fs.readFileSync(path.join(dir, name)));
    if (actual !== hash) throw new Error(`${path.join(dir, name)} changed: SHA-256 ${actual}, written as ${hash}`);
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A new directory in parent; returns its path. */
export function subdir(parent: string, name: string): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  return dir;
}
