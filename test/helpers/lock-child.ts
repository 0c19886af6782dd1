// A second process for the data-dir lock tests: takes the lock of the data dir given as argv[2] and
// prints "locked" (or the refusal's kind and message), then stays until killed ("hold") or exits
// without releasing the lock ("exit").

import { takeLock } from '../../fabric/store/data-dir-lock';
import type { WeftError } from '../../fabric/errors';

const [dataDir, mode] = process.argv.slice(2);
try {
  takeLock(dataDir);
  process.stdout.write('locked\n');
} catch (err) {
  process.stdout.write(`refused ${(err as WeftError).kind}: ${(err as Error).message}\n`);
  process.exit(1);
}
if (mode === 'exit') process.exit(0);
setInterval(() => undefined, 60_000); // hold the lock until killed
