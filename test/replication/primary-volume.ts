// The primary's own copy of a volume, for replication tests and benches: a real LocalEngine in this
// process with one pool in dir, and the volume's local replica, the layer replication wraps.

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';

export interface PrimaryVolume {
  engine: LocalEngine;
  local: LocalReplica;
}

/** Creates volume `name` of sizeBytes in a new engine whose pool (twice that size) and data live in dir. */
export async function openPrimaryVolume(dir: string, name: string, sizeBytes: number): Promise<PrimaryVolume> {
  const poolDir = path.join(dir, 'primary-pool');
  fs.mkdirSync(poolDir);
  let local: LocalReplica | undefined;
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'primary-data'),
    pools: [{ class: 'default', path: poolDir, sizeBytes: 2 * sizeBytes }],
    logger: pino({ level: 'silent' }),
    stackFor: (replica) => ({ top: (local = replica), copy: replica }),
  });
  await engine.createVolume({ name, sizeBytes });
  return { engine, local: local as LocalReplica };
}
