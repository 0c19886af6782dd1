// The node's NBD client (what a primary uses to reach its copies) against a server whose disk is
// slow to make writes durable, as an HDD with gigabytes to write back is: with durableTimeoutMs, a
// FLUSH or FUA write may take that long while the server shows it is alive, and a server that goes
// silent is still given up on within the request timeout.

import type { Pieces } from '../../fabric/pieces';
import { NbdClient } from '../../fabric/nbd/client';
import { PassThroughDevice } from '../../fabric/volume/pass-through-device';
import { TcpProxy } from '../helpers/tcp-proxy';
import { NbdFixture } from './fixture';

const MiB = 1024 * 1024;
const TIMEOUT_MS = 1000;

/**
 * A disk whose syncs (FLUSH, and the sync of a FUA write) take syncMs, and whose reads wait for the
 * sync under way, as a primary's reads wait while its read lease flushes its copies; it counts
 * reads. One per connection (the fixture opens the export for each).
 */
class SlowSyncLayer extends PassThroughDevice {
  syncMs = 0;
  reads = 0;
  private syncing: Promise<void> = Promise.resolve();

  override async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.reads++;
    await this.syncing;
    return super.read(offsetBytes, lengthBytes);
  }

  override async write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    await super.write(offsetBytes, data, false);
    if (fua) await this.flush();
  }

  override flush(): Promise<void> {
    const synced = new Promise<void>((resolve) => setTimeout(resolve, this.syncMs)).then(() => super.flush());
    this.syncing = synced.catch(() => undefined);
    return synced;
  }
}

let fixture: NbdFixture;
let disk: SlowSyncLayer;
let proxy: TcpProxy;
const clients: NbdClient[] = [];

beforeAll(async () => {
  fixture = await NbdFixture.start([{ name: 'disk', sizeBytes: MiB, layer: (device) => (disk = new SlowSyncLayer(device)) }]);
  proxy = await TcpProxy.start({ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: fixture.port });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  proxy.heal();
});

afterAll(async () => {
  await proxy.close();
  await fixture.stop();
});

async function connect(durableTimeoutMs?: number): Promise<NbdClient> {
  const client = await NbdClient.connect({ host: '127.0.0.1', port: proxy.port, exportName: 'disk', timeoutMs: TIMEOUT_MS, durableTimeoutMs });
  clients.push(client);
  return client;
}

test('a FLUSH and a FUA write that the disk takes 2.5 timeouts for succeed, the server answering probes meanwhile without the disk', async () => {
  const client = await connect(10 * TIMEOUT_MS);
  disk.syncMs = 2.5 * TIMEOUT_MS;
  const readsBefore = disk.reads;
  await client.write(0, Buffer.alloc(4096, 0x5a), false);
  await client.flush();
  await client.write(4096, Buffer.alloc(4096, 0x5b), true);
  // The probes (one or more per slow sync) read nothing: a read of the disk waits behind its sync,
  // and the FLUSH failed with "no reply to a probe" when they did.
  expect(disk.reads - readsBefore).toBe(0);
  expect(await client.read(0, 8192)).toEqual(Buffer.concat([Buffer.alloc(4096, 0x5a), Buffer.alloc(4096, 0x5b)]));
});

test('without durableTimeoutMs, a FLUSH fails at the request timeout, as every request does', async () => {
  const client = await connect();
  disk.syncMs = 2.5 * TIMEOUT_MS;
  await expect(client.flush()).rejects.toThrow(`no reply within ${TIMEOUT_MS} ms`);
});

test('a FLUSH that outlasts durableTimeoutMs fails, and says so', async () => {
  const client = await connect(2 * TIMEOUT_MS);
  disk.syncMs = 4 * TIMEOUT_MS;
  await expect(client.flush()).rejects.toThrow(`no reply to a FLUSH or FUA request within ${2 * TIMEOUT_MS} ms`);
});

test('a server cut off while a FLUSH waits on its disk is given up on within the request timeout, not durableTimeoutMs', async () => {
  const client = await connect(60 * TIMEOUT_MS);
  disk.syncMs = 6 * TIMEOUT_MS; // far past the cut's detection; the fixture's stop waits for it
  const started = performance.now();
  const flushed = client.flush();
  proxy.cut();
  await expect(flushed).rejects.toThrow(/while a FLUSH or FUA request waited/);
  // The sweep runs every quarter of the timeout: given up on by about 1.25 timeouts, far from 60.
  expect(performance.now() - started).toBeLessThan(5 * TIMEOUT_MS);
});
