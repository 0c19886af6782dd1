// `node set-loop-size.js DEVICE BYTES`: sets a bound loop device's size limit (LOOP_SET_STATUS64,
// weft_loop), in a process of its own. Before it changes the size the kernel writes back the
// device's dirty pages, and the loop's file is served by this very weftd (nbdfuse, then our NBD
// server): issued on weftd's event loop, the ioctl waited for weftd itself, for good (weftd hung in
// D state when a block volume written without fsync was grown online).

import { loadNativeModule } from '../../../fabric/native';

interface NativeLoop {
  setLoopSizeLimit(device: string, bytes: number): void;
}

const [device, bytes] = process.argv.slice(2);
try {
  loadNativeModule<NativeLoop>('weft_loop').setLoopSizeLimit(device, Number(bytes));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
}
