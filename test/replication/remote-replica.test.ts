// A primary names itself and its connection's generation in a copy's export name (~from=F.G, for
// the copy's fence). A copy's node of an older version refuses that name as malformed; the primary
// then opens the name without it, and only on that refusal. A real NBD server whose export names
// follow the older rule.

import { failedPrecondition, invalidArgument } from '../../fabric/errors';
import { nbdReplica } from '../../fabric/replication/remote-replica';
import { startOlderVersionNode, type OlderVersionNode } from '../helpers/older-version-node';
import { cleanupAll } from '../helpers/weftd';

const from = { forwarder: 'ab12', generation: 3 };

let node: OlderVersionNode;
let port: number;
let opened: string[];
const asked: string[] = [];

beforeAll(async () => {
  node = await startOlderVersionNode(1024 * 1024, (name) => {
    asked.push(name);
    if (name.startsWith('busy~')) throw failedPrecondition('volume busy is being deleted');
    // As a node of the older version parses it: VOL~epoch=N, N digits and nothing more.
    const at = name.indexOf('~epoch=');
    if (!/^(0|[1-9][0-9]*)$/.test(name.slice(at + '~epoch='.length))) throw invalidArgument(`malformed replication export name ${JSON.stringify(name)}`);
    return name.slice(0, at) === 'vol';
  });
  ({ port, opened } = node);
});

afterAll(async () => {
  await node?.close();
  await cleanupAll();
});

test('a copy whose node refuses the name with the generation as malformed is opened without it, and replicated to', async () => {
  const connection = await nbdReplica({ id: 'n2', host: '127.0.0.1', port, volume: 'vol', epoch: 7, from }).connect();
  try {
    expect(opened).toEqual(['vol~epoch=7']);
    await connection.write(4096, Buffer.alloc(4096, 0x5c), true);
    expect((await connection.read(4096, 4096)).equals(Buffer.alloc(4096, 0x5c))).toBe(true);
  } finally {
    connection.close();
  }
});

test('another refusal is not retried without the generation', async () => {
  asked.length = 0;
  await expect(nbdReplica({ id: 'n2', host: '127.0.0.1', port, volume: 'busy', epoch: 7, from }).connect()).rejects.toThrow(/being deleted/);
  expect(asked).toEqual(['busy~epoch=7~from=ab12.3']);
});
