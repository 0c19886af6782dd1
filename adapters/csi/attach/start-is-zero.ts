// `node start-is-zero.js DEVICE`: prints "zero" if the device's first MiB (all of a smaller device)
// reads as zeroes, "data" if not; fails if a read fails or the device reads nothing at all. In a
// process of its own: the device is served by this very weftd (loop or nbd, then our NBD server), and
// read on weftd's own thread pool, a few such reads at once would take every thread that weftd's
// serving of them needs (large reads, syncs): every volume of the node would stop.

import fs from 'node:fs';
import { isAllZero } from '../../../fabric/buffers';

const PROBE_BYTES = 1024 * 1024;

function startIsZero(device: string): boolean {
  const fd = fs.openSync(device, 'r');
  try {
    const buf = Buffer.alloc(PROBE_BYTES);
    // Read to the end of that span or of the device: a read that stops short must not make zeroes of what it did not read.
    let read = 0;
    for (let got = -1; read < PROBE_BYTES && got !== 0; read += got) got = fs.readSync(fd, buf, read, PROBE_BYTES - read, read);
    if (read === 0) throw new Error(`${device} reads as empty (size 0): it is not attached as it should be; refusing to format it`);
    return isAllZero(buf.subarray(0, read));
  } finally {
    fs.closeSync(fd);
  }
}

if (require.main === module) {
  try {
    process.stdout.write(startIsZero(process.argv[2]) ? 'zero\n' : 'data\n');
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
