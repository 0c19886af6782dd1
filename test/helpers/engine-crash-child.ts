// Child process for the crash test: rewrites every block of a volume round after round, each block
// stamped with (round, block), flushes after each round and prints "FLUSHED <round>". The test
// kills it with SIGKILL at a random moment and checks what survived.

import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { openExport } from './open-devices';

export const CRASH_VOLUME_BYTES = 16 * 1024 * 1024;
const BLOCK = 4096;
/**
 * Blocks per write, alternating by round: single blocks go through the synchronous path, 256 KiB
 * writes through the thread pool, where a kill often lands between the journal and the data.
 */
const BLOCKS_PER_WRITE = [1, 64];

export function stampedBlock(round: number, block: number): Buffer {
  const buf = Buffer.alloc(BLOCK, (round * 31 + block) & 0xff);
  buf.writeUInt32LE(round, 0);
  buf.writeUInt32LE(block, 4);
  return buf;
}

async function main(): Promise<void> {
  const [dataDir, poolDir] = process.argv.slice(2);
  const engine = await LocalEngine.open({ dataDir, pools: [{ class: 'default', path: poolDir, sizeBytes: 64 * 1024 * 1024 }], logger: pino({ level: 'silent' }) });
  if (!engine.listVolumes().some((v) => v.name === 'crash')) await engine.createVolume({ name: 'crash', sizeBytes: CRASH_VOLUME_BYTES });
  const device = openExport(engine, 'crash');
  const blocks = CRASH_VOLUME_BYTES / BLOCK;
  for (let round = Number(process.argv[4] ?? 1); ; round++) {
    const perWrite = BLOCKS_PER_WRITE[round % BLOCKS_PER_WRITE.length];
    const order = [...Array(blocks / perWrite).keys()].sort(() => Math.random() - 0.5);
    const inflight = new Set<Promise<void>>();
    for (const group of order) {
      const data = Buffer.concat(Array.from({ length: perWrite }, (_, i) => stampedBlock(round, group * perWrite + i)));
      const write: Promise<void> = device.write(group * perWrite * BLOCK, data, false).then(() => {
        inflight.delete(write);
      });
      inflight.add(write);
      if (inflight.size >= 16) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    await device.flush();
    process.stdout.write(`FLUSHED ${round}\n`);
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
