// Starts real weftd processes (bin/weftd) on free ports and temp data dirs for tests,
// runs the weft CLI and other tools against them, and cleans every process and dir up afterwards.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The repository root; this file runs from dist/test/helpers/. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** weftd as users start it (bin/weftd sets the V8 flags weftd runs with). */
export const WEFTD_BIN = path.join(REPO_ROOT, 'bin', 'weftd');
export const WEFT_JS = path.join(REPO_ROOT, 'bin', 'weft');
/**
 * WEFTD_NODE_FLAGS: node flags added to those of bin/weftd for every weftd started here, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" (node refuses those in NODE_OPTIONS). Profiles are written
 * when weftd exits by itself (stop(), not kill9()).
 */
const EXTRA_NODE_FLAGS = (process.env.WEFTD_NODE_FLAGS ?? '').split(' ').filter(Boolean);

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

const liveProcesses = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Runs a command to its end; resolves (never rejects on a non-zero exit) with its output. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(command, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, stdio: 'pipe' }));
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
    child.stdin?.on('error', () => undefined); // EPIPE when the command exits without reading its input
    child.stdin?.end(options.input);
  });
}

/** A new empty directory, removed by cleanupAll(). */
export function makeTempDir(prefix = 'weft-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Kills every process this module started and removes every temp dir it made. Call in afterAll. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...liveProcesses].map((child) => killAndWait(child, 'SIGKILL')));
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Registers a child process for cleanupAll(), which kills it if it still runs. */
export function track(child: ChildProcess): ChildProcess {
  liveProcesses.add(child);
  child.once('exit', () => liveProcesses.delete(child));
  child.once('error', () => liveProcesses.delete(child));
  return child;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export function killAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (exited(child) || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

export interface WeftdOptions {
  /** Default: a new temp dir (removed by cleanupAll). */
  dataDir?: string;
  /** --pool values, e.g. ["ssd:/tmp/x:1GiB"]. */
  pools?: string[];
  extraArgs?: string[];
  /** Environment variables set for weftd, over this process's. */
  env?: NodeJS.ProcessEnv;
}

/** The fields of weftd's "weftd ready" log line. */
interface ReadyLine {
  nbdPort: number;
  apiPort: number;
  metricsPort: number;
  dataDir: string;
  nodeId: string;
  startupMs: number;
}

/** A running weftd. Ports change on restart(). */
export class WeftdHandle {
  nbdPort = 0;
  apiPort = 0;
  metricsPort = 0;
  nodeId = '';
  /** Milliseconds from process start to "weftd ready", as weftd reported it. */
  startupMs = 0;
  private child?: ChildProcess;
  private output = '';

  constructor(readonly dataDir: string, private readonly args: string[], private readonly env: NodeJS.ProcessEnv = {}) {}

  nbdUri(exportName: string): string {
    return `nbd://127.0.0.1:${this.nbdPort}/${exportName}`;
  }

  /** Runs the weft CLI against this node's API. */
  weft(args: string[], options: RunOptions = {}): Promise<RunResult> {
    return run(process.execPath, [WEFT_JS, '--endpoint', `127.0.0.1:${this.apiPort}`, ...args], options);
  }

  /** Everything weftd wrote to stdout and stderr, across restarts. */
  logs(): string {
    return this.output;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const child = track(spawnWeftd(this.args, this.env));
    this.child = child;
    const record = (chunk: Buffer) => (this.output += chunk.toString());
    child.stdout?.on('data', record);
    child.stderr?.on('data', record);
    const ready = await waitForReady(child, () => this.output);
    Object.assign(this, { nbdPort: ready.nbdPort, apiPort: ready.apiPort, metricsPort: ready.metricsPort, nodeId: ready.nodeId, startupMs: ready.startupMs });
  }

  /** SIGKILL, as a crash would; resolves once the process is gone. */
  async kill9(): Promise<void> {
    if (this.child) await killAndWait(this.child, 'SIGKILL');
  }

  /** SIGTERM and wait; resolves with the exit code (null if it died by a signal). */
  async stop(): Promise<number | null> {
    const child = this.child;
    if (!child) return null;
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await killAndWait(child, 'SIGTERM');
    clearTimeout(timer);
    return child.exitCode;
  }

  /** Stops (gracefully) if running, then starts again on the same data dir and flags. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/** bin/weftd with args; with WEFTD_NODE_FLAGS, run by node with its shebang's flags and those. */
function spawnWeftd(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const options = { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] as ('ignore' | 'pipe')[] };
  if (EXTRA_NODE_FLAGS.length === 0) return spawn(WEFTD_BIN, args, options);
  const shebangFlags = fs.readFileSync(WEFTD_BIN, 'utf8').split('\n')[0].split(' ').filter((word) => word.startsWith('--'));
  return spawn(process.execPath, [...shebangFlags, ...EXTRA_NODE_FLAGS, WEFTD_BIN, ...args], options);
}

/** Reads the child's stdout until its "weftd ready" line; rejects with its logs if it exits first. */
function waitForReady(child: ChildProcess, logs: () => string): Promise<ReadyLine> {
  return new Promise((resolve, reject) => {
    let partialLine = '';
    const settle = (finish: () => void) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.stdout?.off('data', onData);
      finish();
    };
    const onExit = (code: number | null) => settle(() => reject(new Error(`weftd exited with ${code} before it was ready:\n${logs()}`)));
    const onData = (chunk: Buffer) => {
      const lines = (partialLine + chunk.toString()).split('\n');
      partialLine = lines.pop() ?? '';
      const ready = lines.map(parseLogLine).find((entry) => entry?.msg === 'weftd ready');
      if (ready) settle(() => resolve(ready as unknown as ReadyLine));
    };
    const timer = setTimeout(() => {
      settle(() => reject(new Error(`weftd was not ready within ${READY_TIMEOUT_MS} ms:\n${logs()}`)));
      child.kill('SIGKILL');
    }, READY_TIMEOUT_MS);
    child.once('exit', onExit);
    child.stdout?.on('data', onData);
  });
}

function parseLogLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Starts weftd on free ports (127.0.0.1) and a temp data dir unless one is given. */
export async function startWeftd(options: WeftdOptions = {}): Promise<WeftdHandle> {
  const dataDir = options.dataDir ?? path.join(makeTempDir('weftd-'), 'data');
  const args = ['--nbd-port', '0', '--api-port', '0', '--metrics-port', '0', '--listen', '127.0.0.1', '--data-dir', dataDir];
  for (const pool of options.pools ?? []) args.push('--pool', pool);
  const handle = new WeftdHandle(dataDir, [...args, ...(options.extraArgs ?? [])], options.env);
  await handle.start();
  return handle;
}
