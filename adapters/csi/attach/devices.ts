// Block devices on this node: loop devices over a file (set up with direct I/O and a size limit,
// found again by their backing file, grown, detached) and the size of any block device.

import { loadNativeModule } from '../../../fabric/native';
import { runTool } from './exec';

interface NativeLoop {
  setLoopSizeLimit(device: string, bytes: number): void;
}

interface LosetupList {
  loopdevices?: { name: string; 'back-file': string | null }[];
}

/**
 * A new loop device over the first sizeBytes of file; direct I/O avoids caching every block twice
 * (loop and file).
 */
export async function attachLoop(file: string, sizeBytes: number): Promise<string> {
  return (await runTool('losetup', ['--find', '--show', '--direct-io=on', '--sizelimit', String(sizeBytes), file])).trim();
}

/** A read-only loop device over a block device: writes through it fail (EROFS/EPERM), whatever opens it. */
export async function attachReadOnlyLoop(device: string): Promise<string> {
  return (await runTool('losetup', ['--find', '--show', '--read-only', device])).trim();
}

/** Sets how much of its file a bound loop device shows; allowed while it is mounted (online growth). */
export async function setLoopSizeLimit(device: string, sizeBytes: number): Promise<void> {
  loadNativeModule<NativeLoop>('weft_loop').setLoopSizeLimit(device, sizeBytes);
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

export async function deviceSizeBytes(device: string): Promise<number> {
  return Number((await runTool('blockdev', ['--getsize64', device])).trim());
}
