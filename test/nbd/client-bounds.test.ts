// What one client can cost the server: handshake input and time (a deadline, however the client
// sends or reads), bytes in flight per connection and per node, and warning lines in the log.

import { NbdFixture } from './fixture';
import { CMD, encodeRequest, IHAVEOPT, OPT, RawNbdClient, REP } from '../helpers/nbd-raw-client';
import { peakDuring } from '../helpers/peak';
import { run } from '../helpers/weftd';

const MiB = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 3000;
const CONNECTION_CAP_BYTES = 4 * MiB;
const NODE_CAP_BYTES = 8 * MiB;

describe('NBD server bounds per client', () => {
  let fixture: NbdFixture;
  const clients: RawNbdClient[] = [];

  async function haggle(): Promise<RawNbdClient> {
    const client = await RawNbdClient.connect(fixture.port);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(3);
    return client;
  }

  async function open(): Promise<RawNbdClient> {
    const { client } = await RawNbdClient.open(fixture.port, 'disk');
    clients.push(client);
    return client;
  }

  /** Sends `count` READs of 1 MiB and reads no reply. */
  function holdReads(client: RawNbdClient, count: number): void {
    client.socket.pause();
    client.socket.write(Buffer.concat(Array.from({ length: count }, (_, i) => encodeRequest({ type: CMD.READ, handle: BigInt(i), offset: i * MiB, length: MiB }))));
  }

  /** Reads the replies to holdReads(): each one, successful, in any order. */
  async function readAllReplies(client: RawNbdClient, count: number): Promise<void> {
    client.socket.resume();
    const handles = new Set<bigint>();
    for (let i = 0; i < count; i++) {
      const reply = await client.readSimpleReply();
      expect(reply.error).toBe(0);
      handles.add(reply.handle);
      await client.read(MiB);
    }
    expect(handles.size).toBe(count);
  }

  /** The server's bytes in flight at their highest while `work` runs and for 300 ms after. */
  function peakInFlight(work: Promise<unknown>): Promise<number> {
    const settled = work.then(() => new Promise((resolve) => setTimeout(resolve, 300)));
    return peakDuring(() => fixture.server.inFlightBytes(), 5, settled);
  }

  beforeAll(async () => {
    fixture = await NbdFixture.start([{ name: 'disk', sizeBytes: 32 * MiB }], {
      handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
      maxConnectionInFlightBytes: CONNECTION_CAP_BYTES,
      maxInFlightBytes: NODE_CAP_BYTES,
    });
  });

  beforeEach(async () => {
    fixture.logs.length = 0;
    await fixture.seed('disk');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await fixture.exportsClosed();
    expect(fixture.server.inFlightBytes()).toBe(0);
    await fixture.expectIntact('disk');
  });

  afterAll(async () => {
    await fixture?.stop();
  });

  describe('handshake', () => {
    test('a client flooding NBD_OPT_LIST without reading the replies is dropped at the deadline', async () => {
      const client = await haggle();
      client.socket.pause();
      // It floods past the deadline if it can; an idle timeout would never fire while it does.
      const limits = { limitBytes: 1024 * MiB, timeoutMs: HANDSHAKE_TIMEOUT_MS + 3000, stallMs: Infinity };
      await client.floodOption(OPT.LIST, limits);
      await fixture.exportsClosed(1000); // dropped by the server (the client, not reading, may not see it)
      expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD handshake: timed out; disconnecting']);
    });

    test('a client trickling an option a byte at a time is dropped at the deadline', async () => {
      const client = await haggle();
      const option = Buffer.alloc(16 + 1000);
      option.writeBigUInt64BE(IHAVEOPT, 0);
      option.writeUInt32BE(OPT.INFO, 8);
      option.writeUInt32BE(1000, 12);
      let at = 0;
      const trickle = setInterval(() => client.socket.write(option.subarray(at, ++at)), 50);
      try {
        expect(await client.closedWithin(5000)).toBe(true);
      } finally {
        clearInterval(trickle);
      }
      expect(at).toBeLessThan(option.length);
      expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD handshake: timed out; disconnecting']);
    });

    test('malformed options log a few warnings, then one line with the count of the rest', async () => {
      const client = await haggle();
      const count = 1000;
      for (let i = 0; i < count; i++) client.sendOption(OPT.LIST, Buffer.from('x'));
      for (let i = 0; i < count; i++) expect((await client.readOptionReply()).type).toBe(REP.ERR_INVALID);
      await client.expectAck(OPT.ABORT);
      await client.closed;
      await fixture.exportsClosed();
      const warnings = fixture.warnings();
      expect(warnings.length).toBeLessThanOrEqual(10);
      expect(warnings[0]).toMatchObject({ msg: 'NBD handshake: malformed option', option: OPT.LIST });
      const summary = warnings[warnings.length - 1];
      expect(summary.suppressed).toBe(count - (warnings.length - 1));
      expect(summary.msg).toMatch(/more warnings about this client's requests were not logged/);
    });
  });

  describe('transmission', () => {
    test('a client pipelining READs without reading replies holds at most its own cap', async () => {
      const client = await open();
      const count = 16;
      holdReads(client, count);
      const peak = await peakInFlight(new Promise((resolve) => setTimeout(resolve, 500)));
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThan(CONNECTION_CAP_BYTES + MiB); // one request may cross the cap
      await readAllReplies(client, count);
    });

    test('several such clients hold at most the node cap, and qemu-io is still served', async () => {
      const holders = await Promise.all(Array.from({ length: 6 }, () => open()));
      const count = 16;
      for (const holder of holders) holdReads(holder, count);
      const qemuIo = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 30M 1M', '-c', 'read -P 0x5a 30M 1M', fixture.uri('disk')], { timeoutMs: 30_000 });
      const peak = await peakInFlight(qemuIo);
      expect(await qemuIo).toMatchObject({ code: 0 });
      // Over the node cap, only a connection with nothing in flight may send (one request each).
      expect(peak).toBeLessThanOrEqual(NODE_CAP_BYTES + (holders.length + 1) * MiB);
      await Promise.all(holders.map((holder) => readAllReplies(holder, count)));
    });

    test('malformed requests log a few warnings, then one line with the count of the rest', async () => {
      const client = await open();
      const count = 1000;
      const requests = Array.from({ length: count }, (_, i) => encodeRequest({ type: CMD.READ, flags: 0x8000, handle: BigInt(i), length: 512 }));
      client.socket.write(Buffer.concat(requests));
      for (let i = 0; i < count; i++) expect((await client.readSimpleReply()).error).not.toBe(0);
      client.sendRequest({ type: CMD.DISC });
      await client.closed;
      await fixture.exportsClosed();
      const warnings = fixture.warnings();
      expect(warnings.length).toBeLessThanOrEqual(10);
      expect(warnings[0]).toMatchObject({ command: 'READ', flags: 0x8000 });
      expect(warnings[warnings.length - 1].suppressed).toBe(count - (warnings.length - 1));
    });
  });
});
