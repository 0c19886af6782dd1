// The writer of the embedded store's crash test: opens the store in argv[2] and puts key/0, key/1, ...
// with 16 puts in flight, printing "ack N" once put N is acknowledged, until it is killed.

import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import { createLogger } from '../../fabric/logger';

/** 2 KiB values, so that the file grows past its rewrite threshold within a few hundred puts. */
export const storeWriterValue = (n: number) => `${n}:`.padEnd(2048, 'v');

async function main(): Promise<void> {
  const store = await EmbeddedStore.open(process.argv[2], createLogger('silent', 'store-writer'));
  let next = 0;
  const writer = async () => {
    for (;;) {
      const n = next++;
      await store.put(`key/${n}`, storeWriterValue(n));
      // Synchronous on a pipe (Linux): a line the parent reads was acknowledged before.
      process.stdout.write(`ack ${n}\n`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, writer));
}

if (require.main === module) void main();
