// The long-lived helper processes of an attachment (nbdkit relay, nbdfuse): started detached so that
// they outlive a weftd restart, found again later by pid and checked by name and working directory.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../../../fabric/errors';

const POLL_MS = 25;
const LOG_TAIL_BYTES = 2000;

/** Which process a pid must be to count as ours: pids are reused, so check more than the number. */
export interface HelperIdentity {
  /** The executable's name as /proc/PID/comm shows it, e.g. "nbdfuse". */
  name: string;
  /** The working directory it was started in: the attachment's private work dir. */
  cwd: string;
}

export interface DaemonSpec extends HelperIdentity {
  args: string[];
  /** Written by the daemon once it is ready; its presence is the readiness signal. */
  pidFile: string;
  /** Receives the daemon's stdout and stderr. */
  logFile: string;
  readyTimeoutMs: number;
}

/**
 * Starts a daemon in its own session (so that neither weftd's exit nor a signal to weftd's process
 * group reaches it) and resolves with its pid once it has written its pid file. weftd never waits
 * for it to exit: it is stopped explicitly, by detach.
 */
export async function startDaemon(spec: DaemonSpec): Promise<number> {
  fs.rmSync(spec.pidFile, { force: true });
  const log = fs.openSync(spec.logFile, 'w');
  let exit: string | undefined;
  try {
    const child = spawn(spec.name, spec.args, { cwd: spec.cwd, detached: true, stdio: ['ignore', log, log] });
    child.once('error', (error) => (exit = error.message));
    child.once('exit', (code, signal) => (exit = `exited with ${code ?? signal}`));
    child.unref();
  } finally {
    fs.closeSync(log);
  }
  const deadline = Date.now() + spec.readyTimeoutMs;
  while (Date.now() < deadline) {
    const pid = await readPidFile(spec.pidFile);
    if (pid !== undefined) return pid;
    if (exit !== undefined) throw await daemonFailed(spec, exit);
    await sleep(POLL_MS);
  }
  throw await daemonFailed(spec, `did not write ${spec.pidFile} within ${spec.readyTimeoutMs} ms`);
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

/** True if pid is a live (not zombie) process with this name and working directory. */
export async function isHelperAlive(pid: number, identity: HelperIdentity): Promise<boolean> {
  try {
    const [stat, comm, cwd] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/comm`, 'utf8'),
      readlink(`/proc/${pid}/cwd`),
    ]);
    // stat is "PID (COMM) STATE ..."; COMM may hold spaces and parentheses, so take the last ")".
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && comm.trim() === identity.name && cwd === identity.cwd;
  } catch {
    return false;
  }
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
