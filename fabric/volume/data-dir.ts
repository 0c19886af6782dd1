// A data dir's FORMAT file: a weftd refuses a data dir of another on-disk format, and a new data
// dir gets its metadata first and its FORMAT file last, so that one with a FORMAT file always has
// its metadata.

import * as fs from 'fs';
import * as path from 'path';
import { failedPrecondition } from '../errors';
import { writeFileAtomic } from '../store/file-io';
import { Metadata } from './metadata';

/**
 * On-disk format of a data dir; a weftd refuses any other. 2: checksummed journal chunks, control
 * records. 3: sequence numbers that never restart, journals chained by BASE records (checkpoints
 * written while I/O goes on).
 */
export const FORMAT_VERSION = 3;

/** Checks the FORMAT of an existing data dir, or makes a new one. */
export function prepareDataDir(dataDir: string): void {
  const formatFile = path.join(dataDir, 'FORMAT');
  if (fs.existsSync(formatFile)) {
    let format: unknown;
    try {
      format = (JSON.parse(fs.readFileSync(formatFile, 'utf8')) as { format?: unknown }).format;
    } catch {
      throw failedPrecondition(`data dir ${dataDir}: ${formatFile} is not valid JSON`);
    }
    if (format !== FORMAT_VERSION) {
      throw failedPrecondition(
        `data dir ${dataDir} was written in on-disk format ${String(format)}; this weftd reads format ${FORMAT_VERSION} only`,
      );
    }
    return;
  }
  const metaDir = path.join(dataDir, 'meta');
  const others = fs.readdirSync(dataDir).filter((name) => !['LOCK', 'meta', 'FORMAT.tmp'].includes(name));
  if (others.length > 0 || (fs.existsSync(metaDir) && !isEmptyMetadata(metaDir))) {
    throw failedPrecondition(`data dir ${dataDir} is not empty and has no FORMAT file; is it a Weft data dir?`);
  }
  // Nothing, or what a first start stopped half-way left: an empty catalog.
  fs.rmSync(metaDir, { recursive: true, force: true });
  Metadata.initialize(metaDir);
  writeFileAtomic(formatFile, JSON.stringify({ format: FORMAT_VERSION }) + '\n', dataDir);
}

function isEmptyMetadata(metaDir: string): boolean {
  try {
    const { catalog } = Metadata.open(metaDir).metadata;
    return catalog.layers.length === 0 && catalog.pools.length === 0;
  } catch {
    return fs.readdirSync(metaDir).every((name) => name.startsWith('journal-') || name === 'checkpoint.tmp');
  }
}
