// A real NBD server serving one device under the export names a node of an older version knows:
// what it refuses as malformed, it refuses with the older version's INVALID_ARGUMENT, as such a node
// does during a rolling upgrade.

import path from 'node:path';
import pino from 'pino';
import { NbdServer } from '../../fabric/nbd/server';
import { FileBlockDevice } from './file-block-device';
import { makeTempDir } from './weftd';

export interface OlderVersionNode {
  port: number;
  /** Every name opened (served), in order. */
  opened: string[];
  close(): Promise<void>;
}

/** open(name): true to serve the device under name, false for no such export; throws to refuse it otherwise. */
export async function startOlderVersionNode(sizeBytes: number, open: (name: string) => boolean): Promise<OlderVersionNode> {
  const device = await FileBlockDevice.create(path.join(makeTempDir('weft-older-node-'), 'vol'), sizeBytes);
  const opened: string[] = [];
  const server = new NbdServer({
    logger: pino({ level: 'silent' }),
    provider: {
      names: () => ['vol'],
      open: (name) => {
        if (!open(name)) return undefined;
        opened.push(name);
        return { device, close: () => undefined };
      },
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  return {
    port,
    opened,
    close: async () => {
      await server.close();
      await device.close();
    },
  };
}
