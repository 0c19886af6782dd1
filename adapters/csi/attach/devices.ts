// Block devices on this node: loop devices over a file (set up with direct I/O, found again by their
// backing file, told to re-read its size, detached) and the size of any block device.

import { runTool } from './exec';

interface LosetupList {
  loopdevices?: { name: string; 'back-file': string | null }[];
}

export function isLoopDevice(device: string): boolean {
  return /^\/dev\/loop\d+$/.test(device);
}

/** A new loop device over file; direct I/O avoids caching every block twice (loop and file). */
export async function attachLoop(file: string): Promise<string> {
  return (await runTool('losetup', ['--find', '--show', '--direct-io=on', file])).trim();
}

/** The loop devices whose backing file is this path (normally one, or none). */
export async function loopsBackedBy(file: string): Promise<string[]> {
  const output = await runTool('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  const list = (output.trim() ? JSON.parse(output) : {}) as LosetupList;
  return (list.loopdevices ?? []).filter((loop) => loop['back-file'] === file).map((loop) => loop.name);
}

export async function detachLoop(device: string): Promise<void> {
  await runTool('losetup', ['--detach', device]);
}

/** Makes a loop device take the current size of its backing file. */
export async function refreshLoopCapacity(device: string): Promise<void> {
  await runTool('losetup', ['--set-capacity', device]);
}

export async function deviceSizeBytes(device: string): Promise<number> {
  return Number((await runTool('blockdev', ['--getsize64', device])).trim());
}
