// One weftd per data dir (fabric/store/data-dir-lock.ts): a lock held by one process refuses another,
// with the holder's pid, and the kernel releases it when the holder exits or is killed with -9.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { ChildProcess, spawn } from 'child_process';
import { releaseLock, takeLock } from '../../fabric/store/data-dir-lock';

const CHILD = path.join(__dirname, '../helpers/lock-child.js');

let dir: string;
let children: ChildProcess[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-lock-'));
});

afterEach(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) await kill(child);
  children = [];
  releaseLock(dir);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Starts a process that tries to lock dir; resolves with its first line of output. */
function lockInChild(mode: 'hold' | 'exit'): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [CHILD, dir, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', (line) => resolve({ child, line }));
    child.once('error', reject);
  });
}

function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

const exitOf = (child: ChildProcess) =>
  child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise<number | null>((resolve) => child.once('exit', resolve));

test('a data dir locked here is refused to another process, naming this pid', async () => {
  takeLock(dir);
  const { child, line } = await lockInChild('hold');
  expect(line).toBe(`refused FAILED_PRECONDITION: data dir ${dir} is in use by another weftd (pid ${process.pid})`);
  expect(await exitOf(child)).toBe(1);
});

test('a lock released here can be taken by another process; the LOCK file stays', async () => {
  takeLock(dir);
  releaseLock(dir);
  expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(true);
  const { line } = await lockInChild('hold');
  expect(line).toBe('locked');
});

test('a lock held by a process killed with -9 is released by the kernel', async () => {
  const { child, line } = await lockInChild('hold');
  expect(line).toBe('locked');
  expect(() => takeLock(dir)).toThrow(`data dir ${dir} is in use by another weftd (pid ${child.pid})`);
  await kill(child);
  takeLock(dir);
  expect(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8')).toBe(`${process.pid}\n`);
});

test('a lock held by a process that exits without releasing it is released by the kernel', async () => {
  const { child, line } = await lockInChild('exit');
  expect(line).toBe('locked');
  expect(await exitOf(child)).toBe(0);
  takeLock(dir);
});
