// How long a metadata checkpoint stalls I/O (issue 8): with CKPT_BLOCKS mapped blocks and a journal
// of CKPT_JOURNAL_MIB MiB, it times the cut (startCheckpoint: the only moment the engine must drain
// writes), the rest of the checkpoint (finish), the longest the event loop was blocked during
// finish, and group commits running meanwhile; beside them a group commit alone, and the
// blocking checkpoint() the engine used before. Run: node dist/test/bench/checkpoint.js

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Metadata } from '../../fabric/volume/metadata';
import { FIRST_PHYSICAL } from '../../fabric/volume/block-map';

const BLOCKS = (process.env.CKPT_BLOCKS ?? '1000000,4000000').split(',').map(Number);
const JOURNAL_BYTES = Number(process.env.CKPT_JOURNAL_MIB ?? 64) * 1024 * 1024;
const LAYER = 1;
/** Blocks per journal record: a 128 KiB write. */
const RUN_BLOCKS = 32;

/** Metadata with `blocks` mapped blocks and a journal of JOURNAL_BYTES, as a busy node has it. */
async function busyMetadata(dir: string, blocks: number): Promise<Metadata> {
  Metadata.initialize(dir);
  const m = Metadata.open(dir).metadata;
  m.checkpoint();
  const record = { id: LAYER, pool: 'default', parent: null };
  m.recordControl([{ kind: 'layer', key: String(LAYER), value: record }], []);
  m.catalog.layers.push(record);
  const map = m.mapOf(LAYER);
  for (let b = 0; b < blocks; b++) map.set(b, FIRST_PHYSICAL + b, b);
  const crcs = new Uint32Array(RUN_BLOCKS);
  for (let i = 0; m.journalBytes < JOURNAL_BYTES; i++) {
    const first = (i * RUN_BLOCKS) % blocks;
    m.recordRun(LAYER, first, FIRST_PHYSICAL + first, crcs);
    if (i % 256 === 255) {
      m.recordSync(m.lastSeq);
      await m.sync();
    }
  }
  m.recordSync(m.lastSeq);
  await m.sync();
  return m;
}

/** Times a group commit as the engine makes one: a few writes, a SYNC record, the journal sync. */
async function groupCommit(m: Metadata, i: number): Promise<number> {
  const started = performance.now();
  for (let j = 0; j < 8; j++) m.recordRun(LAYER, (i * 8 + j) % 1000, FIRST_PHYSICAL, new Uint32Array(1));
  m.recordSync(m.lastSeq);
  await m.sync();
  return performance.now() - started;
}

/** Runs fn while sampling the event loop: returns fn's time and the longest gap between turns. */
async function withLoopWatch(fn: () => Promise<void>): Promise<{ ms: number; longestBlockMs: number }> {
  let longest = 0;
  let last = performance.now();
  let running = true;
  const tick = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  const started = performance.now();
  await fn();
  const ms = performance.now() - started;
  running = false;
  return { ms, longestBlockMs: longest };
}

const f = (ms: number) => ms.toFixed(1);

async function main(): Promise<void> {
  console.log(`journal ${JOURNAL_BYTES / 1024 / 1024} MiB; ${os.cpus().length} cores; metadata on ${os.tmpdir()}`);
  console.log('| mapped blocks | cut (stall) ms | cut, journal made in the cut ms | finish ms | longest event-loop block in finish ms | group commits during finish: n, max ms | group commit alone: median ms | blocking checkpoint() ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const blocks of BLOCKS) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-bench-ckpt-'));
    try {
      const m = await busyMetadata(dir, blocks);
      const alone: number[] = [];
      for (let i = 0; i < 20; i++) alone.push(await groupCommit(m, i));
      alone.sort((a, b) => a - b);

      // The cut without a prepared journal (it is created, synced and renamed in the cut).
      let started = performance.now();
      let cut = m.startCheckpoint();
      const unprepared = performance.now() - started;
      await cut.finish(async () => undefined);
      for (let i = 0; m.journalBytes < JOURNAL_BYTES; i++) m.recordRun(LAYER, (i * RUN_BLOCKS) % blocks, FIRST_PHYSICAL, new Uint32Array(RUN_BLOCKS));
      await m.sync();

      await m.prepareCheckpoint();
      started = performance.now();
      cut = m.startCheckpoint();
      const stall = performance.now() - started;
      const during: number[] = [];
      let finishing = true;
      const commits = (async () => {
        for (let i = 0; finishing; i++) during.push(await groupCommit(m, i));
      })();
      const finish = await withLoopWatch(() => cut.finish(async () => undefined));
      finishing = false;
      await commits;

      started = performance.now();
      m.checkpoint();
      const blocking = performance.now() - started;
      console.log(
        `| ${blocks} | ${f(stall)} | ${f(unprepared)} | ${f(finish.ms)} | ${f(finish.longestBlockMs)} | ${during.length}, ${f(Math.max(...during))} | ${f(alone[10])} | ${f(blocking)} |`,
      );
      m.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
