// Leak checks and forced cleanup for tests that attach volumes: the mounts, loop devices and helper
// processes (nbdfuse, nbdkit) under one test root, so that tests running beside it are never touched.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WeftdHandle } from './weftd';

const HELPER_NAMES = ['nbdfuse', 'nbdkit', 'nbd-client'];

export interface Leftovers {
  /** Mount points, deepest last, with their filesystem type: "/tmp/x/fuse (fuse)". */
  mounts: { target: string; fsType: string }[];
  /** Loop devices whose backing file is under the root. */
  loops: string[];
  /** Live helper processes started in (or naming) a dir under the root. */
  processes: { pid: number; name: string }[];
}

function under(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(`${root}/`);
}

/** /proc/self/mountinfo escapes spaces and such as \040. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function mountsUnder(root: string): Leftovers['mounts'] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      return { target: unescapeMountField(fields[4]), fsType: fields[fields.indexOf('-') + 1] };
    })
    .filter((mount) => under(root, mount.target));
}

function loopsUnder(root: string): string[] {
  const result = spawnSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`losetup --list failed: ${result.stderr}`);
  const list = (result.stdout.trim() ? JSON.parse(result.stdout) : {}) as { loopdevices?: { name: string; 'back-file': string | null }[] };
  return (list.loopdevices ?? []).filter((loop) => loop['back-file'] && under(root, loop['back-file'])).map((loop) => loop.name);
}

function processesUnder(root: string): Leftovers['processes'] {
  const found: Leftovers['processes'] = [];
  for (const entry of fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const pid = Number(entry);
    try {
      const name = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!HELPER_NAMES.includes(name)) continue;
      const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (state !== 'Z' && (under(root, cwd) || cmdline.includes(root))) found.push({ pid, name });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

export function leftoversUnder(root: string): Leftovers {
  return { mounts: mountsUnder(root), loops: loopsUnder(root), processes: processesUnder(root) };
}

function isEmpty(leftovers: Leftovers): boolean {
  return !leftovers.mounts.length && !leftovers.loops.length && !leftovers.processes.length;
}

/** Throws, listing them, if any mount, loop device or helper process under root is left. */
export function expectNoLeftovers(root: string): void {
  const leftovers = leftoversUnder(root);
  if (!isEmpty(leftovers)) throw new Error(`left behind under ${root}: ${JSON.stringify(leftovers)}`);
}

/**
 * After each test of the file: fails it if anything is left under the dirs (read when the hook runs,
 * as beforeAll sets them), and removes what is left either way.
 */
export function failOnLeftoversAfterEach(dirs: () => string[]): void {
  afterEach(async () => {
    try {
      for (const dir of dirs()) expectNoLeftovers(dir);
    } finally {
      for (const dir of dirs()) await forceCleanup(dir);
    }
  });
}

/**
 * Removes whatever a test left under root, whatever state it is in: filesystems (deepest first), loop
 * devices, FUSE mounts, helper processes. Safe to call when nothing is left.
 */
export async function forceCleanup(root: string): Promise<void> {
  for (const mount of mountsUnder(root).filter((m) => !m.fsType.startsWith('fuse')).reverse()) forceUnmount(mount.target);
  for (const loop of loopsUnder(root)) spawnSync('losetup', ['--detach', loop]);
  for (const mount of mountsUnder(root).reverse()) forceUnmount(mount.target);
  for (const helper of processesUnder(root)) process.kill(helper.pid, 'SIGKILL');
  for (let waited = 0; waited < 5000 && !isEmpty(leftoversUnder(root)); waited += 50) await sleep(50);
}

function forceUnmount(target: string): void {
  if (spawnSync('umount', [target]).status !== 0) spawnSync('umount', ['--lazy', target]);
}

/** How many NBD connections weftd counts for a volume. */
export async function nbdConnections(weftd: WeftdHandle, volume: string): Promise<number> {
  const shown = await weftd.weft(['volume', 'show', volume, '--output', 'json']);
  if (shown.code !== 0) throw new Error(`weft volume show ${volume} failed: ${shown.stderr}`);
  return (JSON.parse(shown.stdout) as { connections: number }).connections;
}

/** Waits (up to timeoutMs) for weftd to count no connection to the volume; resolves with the last count. */
export async function settledConnections(weftd: WeftdHandle, volume: string, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = await nbdConnections(weftd, volume);
  while (count > 0 && Date.now() < deadline) {
    await sleep(100);
    count = await nbdConnections(weftd, volume);
  }
  return count;
}
