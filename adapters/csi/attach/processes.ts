// The long-lived helper processes of an attachment (nbdfuse, an nbdkit relay): started detached so
// that they outlive a weftd restart, found again later by pid and checked by name and command line.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../../../fabric/errors';

const POLL_MS = 25;
const LOG_TAIL_BYTES = 2000;
/** How long a daemon that did not get ready has to exit on SIGTERM before SIGKILL. */
const UNREADY_STOP_GRACE_MS = 1000;

/** Which process a pid must be to count as ours: pids are reused, so check more than the number. */
export interface HelperIdentity {
  /** The executable's name as /proc/PID/comm shows it, e.g. "nbdfuse". */
  name: string;
  /** A path of this attachment's work dir that is on the helper's command line. */
  marker: string;
}

export interface DaemonSpec extends HelperIdentity {
  args: string[];
  cwd: string;
  /** Written by the daemon once it is ready; its presence is the readiness signal. */
  pidFile: string;
  /** Receives the daemon's stdout and stderr. */
  logFile: string;
  readyTimeoutMs: number;
}

/**
 * Starts a daemon in its own session (so that neither weftd's exit nor a signal to weftd's process
 * group reaches it) and resolves with its pid once it has written its pid file. A daemon may fork
 * and exit 0 before that; any other exit is a failure. weftd never waits for it: detach stops it.
 */
export async function startDaemon(spec: DaemonSpec): Promise<number> {
  fs.rmSync(spec.pidFile, { force: true });
  const log = fs.openSync(spec.logFile, 'w');
  let failure: string | undefined;
  let group: number | undefined;
  try {
    const child = spawn(spec.name, spec.args, { cwd: spec.cwd, detached: true, stdio: ['ignore', log, log] });
    group = child.pid; // detached: the leader of a process group of its own
    child.once('error', (error) => (failure = error.message));
    child.once('exit', (code, signal) => {
      if (code !== 0) failure = `exited with ${code ?? signal}`;
    });
    child.unref();
  } finally {
    fs.closeSync(log);
  }
  const deadline = Date.now() + spec.readyTimeoutMs;
  while (Date.now() < deadline && failure === undefined) {
    const pid = await readPidFile(spec.pidFile);
    if (pid !== undefined) return pid;
    await sleep(POLL_MS);
  }
  const how = failure ?? `did not write ${spec.pidFile} within ${spec.readyTimeoutMs} ms`; // before the kill's own exit
  await stopUnready(group, spec);
  throw await daemonFailed(spec, how);
}

/**
 * Stops a daemon that did not get ready (slow, or failed), with what it started: left running, it
 * would hold its connection, and could still mount over a retry's attempt or write the pid file
 * that the retry reads. Its process group, and the daemon itself if it wrote its pid file after all
 * (one that forks may leave the group).
 */
async function stopUnready(group: number | undefined, spec: DaemonSpec): Promise<void> {
  if (group !== undefined) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
  const pid = await readPidFile(spec.pidFile);
  if (pid !== undefined) await stopHelper(pid, spec, UNREADY_STOP_GRACE_MS);
  fs.rmSync(spec.pidFile, { force: true });
}

async function daemonFailed(spec: DaemonSpec, how: string): Promise<WeftError> {
  const log = await readFile(spec.logFile, 'utf8').catch(() => '');
  const tail = log.trim().slice(-LOG_TAIL_BYTES) || '(no output)';
  return new WeftError('UNAVAILABLE', `${spec.name} ${spec.args.join(' ')} ${how}: ${tail}`);
}

/** The pid in a pid file, or undefined if there is none (yet). */
export async function readPidFile(pidFile: string): Promise<number | undefined> {
  const text = await readFile(pidFile, 'utf8').catch(() => '');
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** True if pid is a live (not zombie) process of this name with the marker on its command line. */
export async function isHelperAlive(pid: number, identity: HelperIdentity): Promise<boolean> {
  if ((await liveName(pid)) !== identity.name) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').includes(identity.marker);
}

/** The pids of pid's live children called name (e.g. the relay nbdfuse runs). */
export async function childrenNamed(pid: number, name: string): Promise<number[]> {
  const threads = await readdir(`/proc/${pid}/task`).catch(() => []);
  const lists = await Promise.all(threads.map((thread) => readFile(`/proc/${pid}/task/${thread}/children`, 'utf8').catch(() => '')));
  const pids = lists.join(' ').split(' ').filter(Boolean).map(Number);
  const names = await Promise.all(pids.map(liveName));
  return pids.filter((_, index) => names[index] === name);
}

/** The name of a process that exists and is not a zombie, else undefined. */
async function liveName(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // "PID (NAME) STATE ...": NAME may hold spaces and parentheses, so look around the last ")".
  const close = stat.lastIndexOf(')');
  if (close < 0 || stat.charAt(close + 2) === 'Z') return undefined;
  return stat.slice(stat.indexOf('(') + 1, close);
}

/** Resolves true once the helper is gone, false if it is still alive after timeoutMs. */
export async function waitForHelperExit(pid: number, identity: HelperIdentity, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isHelperAlive(pid, identity)) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/** Stops a helper: SIGTERM, then SIGKILL if it is still there after graceMs. */
export async function stopHelper(pid: number, identity: HelperIdentity, graceMs: number): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    if (!(await isHelperAlive(pid, identity))) return;
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return; // it exited just now
      throw error;
    }
    if (await waitForHelperExit(pid, identity, graceMs)) return;
  }
  throw new WeftError('INTERNAL', `${identity.name} (pid ${pid}) did not exit after SIGKILL`);
}
