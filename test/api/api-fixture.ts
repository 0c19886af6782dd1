// A real node's control plane for tests: a LocalEngine over a pool file in a fresh temp dir, an
// embedded cluster store beside it, and an ApiServer over both on 127.0.0.1 (port 0). stop() closes
// them and removes the dir.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { ApiServer } from '../../fabric/api/server';
import type { NodeInfo } from '../../fabric/api/node-info';
import type { ClusterView } from '../../fabric/api/node-service';
import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import { listNodes } from '../../fabric/cluster/membership';
import { forgetNode } from '../../fabric/cluster/forget-node';
import { FORMAT_VERSION, LocalEngine } from '../../fabric/volume/local-engine';
import { openExport } from '../helpers/open-devices';

export const POOL_BYTES = 1 << 30;

export interface ApiFixture {
  engine: LocalEngine;
  endpoint: string;
  port: number;
  dataDir: string;
  node: NodeInfo;
  cluster: ClusterView;
  stop(): Promise<void>;
}

export async function startApiFixture(): Promise<ApiFixture> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-api-'));
  const logger = pino({ level: 'silent' });
  const engine = await LocalEngine.open({ dataDir, pools: [{ class: 'default', path: dataDir, sizeBytes: POOL_BYTES }], logger });
  const node: NodeInfo = {
    nodeId: 'test-node',
    version: '0.0.0-test',
    listenAddress: '127.0.0.1',
    nbdPort: 10809,
    metricsPort: 9580,
    dataDir,
    formatVersion: FORMAT_VERSION,
    startedAt: new Date(),
  };
  const store = await EmbeddedStore.open(dataDir, logger);
  const cluster = { listNodes: () => listNodes(store), forgetNode: (id: string) => forgetNode(store, id) };
  const server = new ApiServer({ engine, node, cluster, logger, shutdownGraceMs: 1000 });
  const port = await server.listen('127.0.0.1', 0);
  const stop = async () => {
    await server.close();
    await store.close();
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  return { engine, endpoint: `127.0.0.1:${port}`, port, dataDir, node, cluster, stop };
}

/** Writes one block of data into a volume through the engine's I/O path, durably. */
export async function writeBlock(engine: LocalEngine, volume: string, offsetBytes: number, data: Buffer): Promise<void> {
  const device = openExport(engine, volume);
  try {
    await device.write(offsetBytes, data, true);
  } finally {
    device.close();
  }
}

/** Flips one byte of the first copy of `pattern` in the pool's backing file, under the engine. */
export function corruptOnDisk(engine: LocalEngine, pattern: Buffer): void {
  corruptInFile(engine.listPools()[0].members[0].path, pattern);
}

/** Flips one byte of the first copy of `pattern` in file (a pool's backing file, however large). */
export function corruptInFile(file: string, pattern: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const at = findInFile(fd, pattern);
    if (at < 0) throw new Error(`pattern not found in ${file}`);
    fs.writeSync(fd, Buffer.from([pattern[0] ^ 0xff]), 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** Scans in 1 MiB chunks (overlapping by the pattern's length) rather than reading a 1 GiB file. */
function findInFile(fd: number, pattern: Buffer): number {
  const chunk = Buffer.alloc(1 << 20);
  for (let position = 0; ; position += chunk.length - pattern.length) {
    const length = fs.readSync(fd, chunk, 0, chunk.length, position);
    const at = chunk.subarray(0, length).indexOf(pattern);
    if (at >= 0) return position + at;
    if (length < chunk.length) return -1;
  }
}
