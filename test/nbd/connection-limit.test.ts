// The node's cap on open NBD connections (--nbd-max-connections): a flood of connections, finished
// handshakes or not, is refused past the cap without disturbing the clients already served, and
// told in a few log lines and a count (WarningLimiter) rather than a line per connection.

import net from 'node:net';
import { NbdFixture, WARN } from './fixture';
import { CMD, RawNbdClient } from '../helpers/nbd-raw-client';
import { waitFor } from '../helpers/wait-for';

const MiB = 1024 * 1024;

describe('NBD connection cap', () => {
  let fixture: NbdFixture;
  const sockets: net.Socket[] = [];

  beforeEach(async () => {
    fixture = await NbdFixture.start([{ name: 'disk', sizeBytes: 4 * MiB }], { maxConnections: 3 });
    await fixture.seed('disk');
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await fixture.stop();
  });

  /** A TCP connection that never starts the handshake; resolves once connected, with when it closes. */
  async function idleConnection(): Promise<{ closed: Promise<void> }> {
    const socket = net.connect(fixture.port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('close', () => reject(new Error('closed before connecting'))));
    return { closed };
  }

  async function disconnect(client: RawNbdClient): Promise<void> {
    client.sendRequest({ type: CMD.DISC });
    await client.closed;
  }

  const refusedWarnings = () => fixture.logs.filter((record) => record.level === WARN && /refused.*--nbd-max-connections/.test(record.msg));

  it('refuses connections past the cap, keeps serving the others, and accepts again once one closes', async () => {
    const first = (await RawNbdClient.open(fixture.port, 'disk')).client;
    const second = (await RawNbdClient.open(fixture.port, 'disk')).client;
    await idleConnection(); // one that never finished its handshake counts too
    await waitFor(() => fixture.server.connectionCount() === 3, 2000, 10);

    await expect(RawNbdClient.open(fixture.port, 'disk')).rejects.toThrow();
    expect(fixture.server.refusedConnections()).toBe(1);
    expect(refusedWarnings()).toHaveLength(1);
    expect(refusedWarnings()[0]).toMatchObject({ maxConnections: 3 });

    // The clients served go on undisturbed.
    const seeded = await first.readData(0, 64 * 1024);
    expect((await second.readData(0, 64 * 1024)).equals(seeded)).toBe(true);

    await disconnect(first);
    await waitFor(() => fixture.server.connectionCount() === 2, 2000, 10);
    await fixture.expectIntact('disk');
    await disconnect(second);
  });

  it('tells of a flood in a few log lines and a count, not a line per connection', async () => {
    const held = await Promise.all([idleConnection(), idleConnection(), idleConnection()]);
    await waitFor(() => fixture.server.connectionCount() === 3, 2000, 10);
    const flood = await Promise.allSettled(Array.from({ length: 50 }, () => idleConnection().then(({ closed }) => closed)));
    // Each was closed by the server (or refused before it connected): none stays open.
    expect(flood.every((outcome) => outcome.status === 'fulfilled' || /closed before connecting/.test(String(outcome.reason)))).toBe(true);
    await waitFor(() => fixture.server.refusedConnections() === 50, 2000, 10);
    expect(fixture.server.connectionCount()).toBe(3);
    expect(refusedWarnings()).toHaveLength(5);
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(held.map(({ closed }) => closed));
    await fixture.server.close(); // the count of those not logged is told at the latest then
    expect(fixture.logs.filter((record) => /more warnings about refused connections/.test(record.msg))).toEqual([expect.objectContaining({ suppressed: 45 })]);
  });
});
