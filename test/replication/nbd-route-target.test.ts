// A forwarder names its node in the primary's export name (~by=NODE, for the claim fence). A primary
// of an older version refuses that name as malformed; the forwarder then opens the name without it,
// and only on that refusal. A real NBD server whose export names follow the older rule.

import { invalidArgument } from '../../fabric/errors';
import { primaryExportName } from '../../fabric/nbd-exports';
import { connectNbdRouteFirstKnown } from '../../fabric/replication/nbd-route-target';
import { startOlderVersionNode, type OlderVersionNode } from '../helpers/older-version-node';
import { cleanupAll } from '../helpers/weftd';

const SIZE = 1024 * 1024;
const from = { forwarder: 'ab12', generation: 1 };
const newest = primaryExportName('vol', { from, by: 'n2' });
const older = primaryExportName('vol', { from });

let node: OlderVersionNode;
let port: number;
let opened: string[];

beforeAll(async () => {
  node = await startOlderVersionNode(SIZE, (name) => {
    // As a node of the older version parses it: after ~from=, F.G and nothing more.
    const from = name.slice(name.indexOf('~from=') + '~from='.length);
    if (!/^[0-9a-f]{1,32}\.(0|[1-9][0-9]{0,14})$/.test(from)) throw invalidArgument(`malformed primary export name ${JSON.stringify(name)}`);
    return name === older;
  });
  ({ port, opened } = node);
});

afterAll(async () => {
  await node?.close();
  await cleanupAll();
});

test('a primary that refuses the newest name as malformed is opened with the older one, and serves', async () => {
  expect(newest).toBe('vol~primary~from=ab12.1~by=n2');
  const target = await connectNbdRouteFirstKnown({ host: '127.0.0.1', port }, [newest, older]);
  try {
    await target.write(0, Buffer.alloc(4096, 0x5a), true);
    expect((await target.read(0, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
  } finally {
    target.close();
  }
  expect(opened).toEqual([older]);
});

test('any other refusal is the answer: no older name is tried', async () => {
  const unknown = primaryExportName('other', { from });
  await expect(connectNbdRouteFirstKnown({ host: '127.0.0.1', port }, [unknown, older])).rejects.toThrow(/no export named/);
  await expect(connectNbdRouteFirstKnown({ host: '127.0.0.1', port }, [newest])).rejects.toThrow(/malformed primary export name/);
  expect(opened).toEqual([older]);
});
