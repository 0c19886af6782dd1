// How long I/O stalls when the engine writes a checkpoint of a 64 MiB journal (issue 8), measured on
// a real LocalEngine. First 32 writers grow the journal with 4 KiB random writes as fast as they go,
// to just under the limit; once the disk has caught up, they go on at a rate the disk keeps up with
// (STALL_RATE writes/s in all) while one more FLUSHes every 10 ms (group commits), until the engine
// has written STALL_CHECKPOINTS checkpoints in the background. Reports the I/O pause of each (the
// drain of the writes in flight and the cut), how long the whole checkpoint took, and the write and
// FLUSH latencies of the second part, during checkpoints and outside. (Unthrottled, the writes fill
// the page cache faster than this VM's disk drains it, and the kernel's dirty-page throttling, not
// the engine, then decides every latency.)
// Run: npm run build && node dist/test/bench/checkpoint-stall.js   (STALL_JOURNAL_MIB, STALL_CHECKPOINTS, STALL_RATE)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';

const MiB = 1024 * 1024;
const JOURNAL_BYTES = Number(process.env.STALL_JOURNAL_MIB ?? 64) * MiB;
const CHECKPOINTS = Number(process.env.STALL_CHECKPOINTS ?? 1);
const RATE = Number(process.env.STALL_RATE ?? 4000);
/** The fast part stops this far below the journal limit. */
const MARGIN_BYTES = MiB;
const WRITERS = 32;
const VOLUME_BYTES = 64 * MiB;
const FLUSH_EVERY_MS = 10;
const TIMEOUT_MS = 15 * 60_000;

interface Checkpoint {
  endAt: number;
  /** I/O was paused for these two: the writes in flight finishing, and the cut. */
  drainMs: number;
  cutMs: number;
  writtenMs: number;
}

interface Timed {
  at: number;
  ms: number;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(label: string, samples: Timed[]): string {
  const ms = samples.map((s) => s.ms);
  const f = (v: number) => v.toFixed(2).padStart(8);
  return `| ${label.padEnd(34)} | ${String(ms.length).padStart(8)} | ${f(percentile(ms, 50))} | ${f(percentile(ms, 99))} | ${f(ms.reduce((a, b) => Math.max(a, b), 0))} |`;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-stall-'));
  const checkpoints: Checkpoint[] = [];
  const logger = pino({ level: 'info' }, {
    write(line: string) {
      const entry = JSON.parse(line) as { msg: string } & Omit<Checkpoint, 'endAt'>;
      if (entry.msg === 'checkpoint written') checkpoints.push({ endAt: performance.now(), drainMs: entry.drainMs, cutMs: entry.cutMs, writtenMs: entry.writtenMs });
      if (entry.msg === 'checkpoint failed') console.error(line.trim());
    },
  });
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    // Room for every write between two syncs: writes go to new blocks, and the old ones are free only
    // once a sync made that durable (a full pool would make writes wait for FLUSHes, not checkpoints).
    pools: [{ class: 'default', path: dir, sizeBytes: 64 * VOLUME_BYTES }],
    logger,
    syncIntervalMs: 0,
    checkpointJournalBytes: JOURNAL_BYTES,
  });
  const writes: Timed[] = [];
  const flushes: Timed[] = [];
  try {
    await engine.createVolume({ name: 'v', sizeBytes: VOLUME_BYTES });
    const device = engine.openVolume('v');
    const blocks = VOLUME_BYTES / 4096;
    const data = Buffer.alloc(4096, 0x5a);
    const started = performance.now();
    const write = () => device.write(Math.floor(Math.random() * blocks) * 4096, data, false);
    const filled = () => engine.metadata.journalBytes >= JOURNAL_BYTES - MARGIN_BYTES;
    await Promise.all(Array.from({ length: WRITERS }, async () => {
      while (!filled()) await write();
    }));
    // Let the disk catch up with what the fast part left in the page cache.
    let flushMs: number;
    do {
      const at = performance.now();
      await device.flush();
      flushMs = performance.now() - at;
    } while (flushMs > 100);
    console.error(`journal at ${(engine.metadata.journalBytes / MiB).toFixed(1)} MiB after ${((performance.now() - started) / 1000).toFixed(0)} s; now ${RATE} writes/s`);
    const done = () => checkpoints.length >= CHECKPOINTS || performance.now() - started > TIMEOUT_MS;
    const pauseMs = (1000 * WRITERS) / RATE;
    const writer = async () => {
      while (!done()) {
        const at = performance.now();
        await write();
        writes.push({ at, ms: performance.now() - at });
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, pauseMs - (performance.now() - at))));
      }
    };
    const flusher = async () => {
      while (!done()) {
        const at = performance.now();
        await device.flush();
        flushes.push({ at, ms: performance.now() - at });
        await new Promise((resolve) => setTimeout(resolve, FLUSH_EVERY_MS));
      }
    };
    const progress = setInterval(() => {
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      console.error(`${seconds} s: ${writes.length} writes, journal ${(engine.metadata.journalBytes / MiB).toFixed(1)} MiB, ${checkpoints.length} checkpoint(s)`);
    }, 10_000);
    await Promise.all([...Array.from({ length: WRITERS }, writer), flusher()]);
    clearInterval(progress);
    device.close();
  } finally {
    await engine.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const inside = (t: Timed) => checkpoints.some((c) => t.at + t.ms >= c.endAt - c.writtenMs && t.at <= c.endAt);
  console.log(`journal limit ${JOURNAL_BYTES / MiB} MiB, ${WRITERS} writers of 4 KiB random writes (${RATE}/s in all), FLUSH every ${FLUSH_EVERY_MS} ms\n`);
  console.log('| checkpoint | I/O paused (ms) | of which drain / cut (ms) | whole checkpoint (ms) |');
  console.log('|---|---|---|---|');
  checkpoints.forEach((c, i) => console.log(`| ${i + 1} | ${(c.drainMs + c.cutMs).toFixed(2)} | ${c.drainMs.toFixed(2)} / ${c.cutMs.toFixed(2)} | ${c.writtenMs.toFixed(0)} |`));
  console.log('\n| latency (ms) | count | p50 | p99 | max |');
  console.log('|---|---|---|---|---|');
  console.log(summary('write, outside checkpoints', writes.filter((w) => !inside(w))));
  console.log(summary('write, during a checkpoint', writes.filter(inside)));
  console.log(summary('FLUSH (group commit), outside', flushes.filter((f) => !inside(f))));
  console.log(summary('FLUSH (group commit), during', flushes.filter(inside)));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
