// A slow disk for tests and benches: a sparse file served by nbdkit with its delay filter (every
// read and write takes latencyMs more), exposed by nbdfuse as a regular file that weftd takes as a
// pool member. Writes through FUSE reach nbdkit each time; reads may be served from the page cache.

import fs from 'node:fs';
import path from 'node:path';
import { run, type RunResult } from './weftd';

export interface SlowDevice {
  /** The file to give weftd as a pool member (`--pool CLASS:FILE`). */
  file: string;
  /**
   * Unmounts lazily: weftd may still hold the file open; nbdfuse (with its nbdkit) exits once
   * nothing does. Stop weftd first for everything to be gone.
   */
  unmount(): Promise<void>;
}

/** Makes DIR/slow.img of sizeBytes and mounts it slowed down under DIR/slow-mount. */
export async function startSlowDevice(dir: string, sizeBytes: number, latencyMs: number): Promise<SlowDevice> {
  const image = path.join(dir, 'slow.img');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, sizeBytes);
  const mount = path.join(dir, 'slow-mount');
  fs.mkdirSync(mount);
  const pidFile = path.join(dir, 'nbdfuse.pid');
  const delay = [`rdelay=${latencyMs}ms`, `wdelay=${latencyMs}ms`];
  const nbdkit = ['nbdkit', '--exit-with-parent', '--filter=delay', 'file', image, ...delay];
  let exited: RunResult | undefined;
  void run('nbdfuse', ['-P', pidFile, path.join(mount, 'nbd'), '[', ...nbdkit, ']']).then((result) => (exited = result));
  for (let waitedMs = 0; !fs.existsSync(pidFile) || fs.statSync(pidFile).size === 0; waitedMs += 50) {
    if (exited) throw new Error(`nbdfuse exited (${exited.code ?? exited.signal}): ${exited.stderr.trim()}`);
    if (waitedMs > 10_000) throw new Error('nbdfuse did not start within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    file: path.join(mount, 'nbd'),
    async unmount() {
      const result = await run('fusermount3', ['-u', '-z', mount]);
      if (result.code !== 0) throw new Error(`fusermount3 -u -z ${mount}: ${result.stderr.trim()}`);
    },
  };
}
