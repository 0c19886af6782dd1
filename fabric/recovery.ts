// `weftd --recover`: tells what is wrong with a data dir's metadata and what starting without the
// unreadable part would lose, and changes nothing; with --accept-loss it then keeps a copy of the
// damaged metadata beside it and writes metadata that a normal start accepts.

import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from 'pino';
import type { WeftdConfig } from './config';
import { releaseLock, takeLock } from './store/data-dir-lock';
import { fsyncDir, fsyncSync } from './store/file-io';
import { LocalEngine } from './volume/local-engine';
import { reportLoss } from './volume/metadata-recovery';

/** Runs the recovery; returns the exit code (0: intact or recovered, 1: damaged and left as it is). */
export async function recoverDataDir(config: WeftdConfig, acceptLoss: boolean, logger: Logger, print: (line: string) => void): Promise<number> {
  const metaDir = path.join(config.dataDir, 'meta');
  if (!fs.existsSync(path.join(config.dataDir, 'FORMAT'))) {
    print(`${config.dataDir} has no FORMAT file: it is not a Weft data dir, or not one that weftd ever finished creating. Nothing to recover.`);
    return 1;
  }
  // A running weftd's metadata changes under the report (a checkpoint, say): refused, as a start is.
  takeLock(config.dataDir);
  let copy: string;
  try {
    const outcome = report(metaDir, acceptLoss, print);
    if (outcome !== 'accept') return outcome;
    copy = `${metaDir}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    fs.cpSync(metaDir, copy, { recursive: true, preserveTimestamps: true });
    // Durable before the start below writes new metadata and drops the old journals.
    syncTree(copy);
    fsyncDir(path.dirname(copy));
  } finally {
    releaseLock(config.dataDir); // the engine takes it again
  }
  const engine = await LocalEngine.open({ dataDir: config.dataDir, pools: config.pools, logger, acceptMetadataLoss: true });
  const volumes = engine.listVolumes().length;
  const snapshots = engine.listSnapshots().length;
  await engine.close();
  print(`Recovered: ${volumes} volume(s) and ${snapshots} snapshot(s) remain. The damaged metadata is kept in ${copy}. Start weftd as usual.`);
  return 0;
}

/** fsyncs every file and directory under dir, dir too. */
function syncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      syncTree(file);
      continue;
    }
    const fd = fs.openSync(file, 'r');
    try {
      fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  fsyncDir(dir);
}

/** Prints what is wrong and what would be lost; an exit code, or 'accept' to go on with --accept-loss. */
function report(metaDir: string, acceptLoss: boolean, print: (line: string) => void): number | 'accept' {
  const { problem, lost } = reportLoss(metaDir);
  if (!problem) {
    print(`The metadata in ${metaDir} is intact: nothing to recover. If weftd refuses to start, its message says why (a pool member, say).`);
    return 0;
  }
  print(`Problem: ${problem.file}${problem.offset === undefined ? '' : ` at offset ${problem.offset}`}: ${problem.problem}.`);
  print('Starting without what cannot be read loses:');
  for (const line of lost) print(`  - ${line}`);
  if (!acceptLoss) {
    print('Nothing was changed. To start without it, run weftd --recover --accept-loss with the same flags; the damaged metadata is kept as a copy.');
    return 1;
  }
  return 'accept';
}
