// The attach helpers' start (adapters/csi/attach/processes.ts) with real processes: a helper that
// does not get ready in time, or fails, is stopped with whatever it started before the attach
// fails. Left running, a slow nbdfuse kept its NBD connection and could still mount over the
// retry's attempt, or write the pid file the retry reads.

import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDaemon } from '../../adapters/csi/attach/processes';
import { liveCommandLine } from '../helpers/processes';
import { makeTempDir } from '../helpers/weftd';

/** The pids of live processes with arg on their command line. */
function processesWith(arg: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => liveCommandLine(Number(pid))?.includes(arg))
    .map(Number);
}

function spec(dir: string, script: string, readyTimeoutMs: number) {
  const marker = path.join(dir, 'marker');
  // The marker is sh's $0, so it is on sh's command line, as a work dir is on a helper's.
  return { name: 'sh', marker, args: ['-c', script, marker], cwd: dir, pidFile: path.join(dir, 'ready.pid'), logFile: path.join(dir, 'log'), readyTimeoutMs };
}

test('a helper that does not get ready in time is stopped, with the process it started, before the start fails', async () => {
  const dir = makeTempDir('weft-helper-');
  const started = path.join(dir, 'started.pid');
  const slow = spec(dir, `sleep 600 & echo $! > ${started}; wait`, 400);
  await expect(startDaemon(slow)).rejects.toThrow(/did not write .*ready\.pid within 400 ms/);
  const child = Number(fs.readFileSync(started, 'utf8'));
  await sleep(100); // the kernel reaps them
  expect(processesWith(slow.marker)).toEqual([]);
  expect(liveCommandLine(child)?.[0]).not.toBe('sleep');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a helper that fails before it is ready leaves nothing it started running; its output is in the error', async () => {
  const dir = makeTempDir('weft-helper-');
  const started = path.join(dir, 'started.pid');
  const failing = spec(dir, `sleep 600 & echo $! > ${started}; echo cannot connect >&2; exit 3`, 10_000);
  await expect(startDaemon(failing)).rejects.toThrow(/exited with 3: cannot connect/);
  const child = Number(fs.readFileSync(started, 'utf8'));
  await sleep(100);
  expect(liveCommandLine(child)?.[0]).not.toBe('sleep');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a helper that gets ready runs on', async () => {
  const dir = makeTempDir('weft-helper-');
  const ready = spec(dir, `echo $$ > ${path.join(dir, 'ready.pid')}; exec sleep 600`, 5000);
  const pid = await startDaemon(ready);
  try {
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep')).toBe(true);
  } finally {
    process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
