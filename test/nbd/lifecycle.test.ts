// Connection lifecycle and isolation: device failures mapped to NBD errors, clients that vanish,
// DISC and server shutdown with requests in flight, backpressure, and many connections at once.

import pino from 'pino';
import { IoError, type IoErrno } from '../../fabric/errors';
import { NbdServer } from '../../fabric/nbd/server';
import type { Pieces } from '../../fabric/pieces';
import type { Extent, WriteZeroesOptions } from '../../fabric/volume/block-device';
import { PassThroughDevice } from '../../fabric/volume/pass-through-device';
import { NbdFixture } from './fixture';
import { CMD, CMD_FLAG, encodeRequest, ERR, RawNbdClient, REPLY_TYPE, type Request } from '../helpers/nbd-raw-client';
import { waitFor } from '../helpers/wait-for';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A test layer over a real device: optional delay, optional injected failure, counts calls in flight. */
class TestLayer extends PassThroughDevice {
  delayMs = 0;
  failure?: () => unknown;
  failSynchronously = false;
  inFlight = 0;
  completed = 0;

  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.call(() => super.read(offsetBytes, lengthBytes));
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.call(() => super.write(offsetBytes, data, fua));
  }

  override flush(): Promise<void> {
    return this.call(() => super.flush());
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.call(() => super.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.call(() => super.writeZeroes(offsetBytes, lengthBytes, options));
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.call(() => super.blockStatus(offsetBytes, lengthBytes));
  }

  private call<T>(operation: () => Promise<T>): Promise<T> {
    if (this.failure && this.failSynchronously) throw this.failure();
    this.inFlight++;
    return (async () => {
      try {
        if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
        if (this.failure) throw this.failure();
        return await operation();
      } finally {
        this.inFlight--;
        this.completed++;
      }
    })();
  }
}

describe('NBD connection lifecycle', () => {
  let fixture: NbdFixture;
  let layer: TestLayer;
  /** How many device calls were still running each time a connection closed its export. */
  const inFlightAtClose: number[] = [];
  const clients: RawNbdClient[] = [];

  async function open(exportName = 'layered', structured = false): Promise<RawNbdClient> {
    const { client } = await RawNbdClient.open(fixture.port, exportName, { structured });
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    fixture = await NbdFixture.start([
      { name: 'disk', sizeBytes: 16 * MiB, answers: { canMultiConn: true } },
      {
        name: 'layered',
        sizeBytes: 4 * MiB,
        layer: (device) => (layer = new TestLayer(device)),
        onClose: () => inFlightAtClose.push(layer.inFlight),
      },
    ]);
  });

  beforeEach(async () => {
    fixture.logs.length = 0;
    inFlightAtClose.length = 0;
    await fixture.seed('disk');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await fixture.exportsClosed();
    expect(inFlightAtClose.every((count) => count === 0)).toBe(true);
    await fixture.expectIntact('disk');
    fixture.logs.length = 0;
  });

  afterAll(async () => {
    await fixture?.stop();
  });

  describe('device failures', () => {
    // EOVERFLOW and ENOTSUP are EINVAL on a WRITE: the protocol allows them only with DF and FAST_ZERO.
    const errnos: [IoErrno, number][] = [
      ['EPERM', 1], ['EIO', 5], ['ENOMEM', 12], ['EINVAL', 22], ['ENOSPC', 28], ['EOVERFLOW', 22], ['ENOTSUP', 22], ['ESHUTDOWN', 108],
    ];

    test.each(errnos)('IoError %s of a WRITE reaches the client as %d, logged once at warn', async (errno, value) => {
      const client = await open();
      layer.failure = () => new IoError(errno, `injected ${errno}`);
      expect(await client.write(0, Buffer.alloc(512))).toBe(value);
      const warnings = fixture.warnings();
      expect(warnings.map((w) => w.msg)).toEqual(['NBD: device error']);
      expect(warnings[0].peer).toMatch(/^127\.0\.0\.1:\d+$/);
    });

    test('any other error is EIO and logged as unexpected; so is one thrown synchronously', async () => {
      const client = await open();
      layer.failure = () => new TypeError('bug in a layer');
      expect(await client.write(0, Buffer.alloc(512))).toBe(ERR.EIO);
      layer.failSynchronously = true;
      client.sendRequest({ type: CMD.FLUSH });
      expect((await client.readSimpleReply()).error).toBe(ERR.EIO);
      expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD: unexpected device failure', 'NBD: unexpected device failure']);
    });

    test('EOVERFLOW reaches the client only for a READ with DF, ENOTSUP never (FAST_ZERO is not accepted); EINVAL instead', async () => {
      const client = await open('layered', true);
      layer.failure = () => new IoError('EOVERFLOW', 'injected EOVERFLOW');
      const errorOf = async (request: Request) => {
        client.sendRequest(request);
        const chunk = await client.readStructuredChunk();
        expect([chunk.type, chunk.handle]).toEqual([REPLY_TYPE.ERROR, request.handle]);
        return chunk.payload.readUInt32BE(0);
      };
      expect(await errorOf({ type: CMD.READ, handle: 1n, length: 4096, flags: CMD_FLAG.DF })).toBe(ERR.EOVERFLOW);
      expect(await errorOf({ type: CMD.READ, handle: 2n, length: 4096 })).toBe(ERR.EINVAL);
      layer.failure = () => new IoError('ENOTSUP', 'injected ENOTSUP');
      expect(await errorOf({ type: CMD.WRITE_ZEROES, handle: 3n, length: 4096 })).toBe(ERR.EINVAL);
      expect(await errorOf({ type: CMD.READ, handle: 4n, length: 4096, flags: CMD_FLAG.DF })).toBe(ERR.EINVAL);
    });

    test('a failing device logs its first errors in full and counts the rest in one line', async () => {
      const client = await open();
      layer.failure = () => new IoError('EIO', 'injected EIO');
      const count = 200;
      for (let i = 0; i < count; i++) expect(await client.write(0, Buffer.alloc(512))).toBe(ERR.EIO);
      client.destroy();
      await fixture.exportsClosed();
      const warnings = fixture.warnings();
      expect(warnings.length).toBeLessThanOrEqual(10);
      expect(warnings[0].msg).toBe('NBD: device error');
      expect(warnings[warnings.length - 1].suppressed).toBe(count - (warnings.length - 1));
    });

    test('a failed READ with simple replies sends no data; with structured replies an ERROR chunk', async () => {
      const simple = await open();
      layer.failure = () => new IoError('EIO', 'checksum mismatch');
      simple.sendRequest({ type: CMD.READ, handle: 1n, length: 4096 });
      simple.sendRequest({ type: CMD.FLUSH, handle: 2n });
      expect(await simple.readSimpleReply()).toEqual({ error: ERR.EIO, handle: 1n });
      expect(await simple.readSimpleReply()).toEqual({ error: ERR.EIO, handle: 2n });
      const structured = await open('layered', true);
      layer.failure = () => new IoError('EIO', 'checksum mismatch'); // each connection gets its own layer
      structured.sendRequest({ type: CMD.READ, handle: 3n, length: 4096 });
      const chunk = await structured.readStructuredChunk();
      expect([chunk.type, chunk.flags, chunk.handle, chunk.payload.readUInt32BE(0)]).toEqual([REPLY_TYPE.ERROR, 1, 3n, ERR.EIO]);
    });
  });

  test('a client that vanishes mid-WRITE payload: the export is closed, nothing is written, others go on', async () => {
    const client = await open();
    client.socket.write(encodeRequest({ type: CMD.WRITE, offset: 0, length: 64 * KiB, payload: Buffer.alloc(32 * KiB, 0xee) }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.destroy();
    await fixture.exportsClosed();
    expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD: client closed the connection in the middle of a request']);
    expect((await open().then((other) => other.readData(0, 16))).includes(0xee)).toBe(false);
  });

  test('a client that vanishes with requests in flight: the device calls finish before the export closes', async () => {
    const client = await open();
    layer.delayMs = 200;
    client.socket.write(Buffer.concat([0, 1, 2, 3].map((i) => encodeRequest({ type: CMD.READ, handle: BigInt(i), offset: i * 4096, length: 4096 }))));
    await waitFor(() => layer.inFlight === 4);
    client.destroy();
    await fixture.exportsClosed();
    expect(layer.completed).toBeGreaterThanOrEqual(4);
    expect(inFlightAtClose).toEqual([0]);
  });

  test("a client that vanishes with requests in flight: their bytes count against the node's cap until the device calls end", async () => {
    const client = await open();
    layer.delayMs = 500;
    client.socket.write(Buffer.concat([0, 1].map((i) => encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 65536, length: 65536, payload: Buffer.alloc(65536, 7) }))));
    await waitFor(() => layer.inFlight === 2);
    expect(fixture.server.inFlightBytes()).toBeGreaterThanOrEqual(2 * 65536);
    client.socket.resetAndDestroy(); // the server's socket closes at once (ECONNRESET)
    await new Promise((resolve) => setTimeout(resolve, 100)); // the writes still run
    expect(layer.inFlight).toBe(2);
    expect(fixture.server.inFlightBytes()).toBeGreaterThanOrEqual(2 * 65536);
    await fixture.exportsClosed();
    expect(fixture.server.inFlightBytes()).toBe(0);
  });

  test('DISC with slow requests in flight: all are answered first', async () => {
    const client = await open();
    layer.delayMs = 100;
    const writes = [0, 1, 2, 3].map((i) =>
      encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 4096, length: 4096, payload: Buffer.alloc(4096, i + 1) }),
    );
    client.socket.write(Buffer.concat([...writes, encodeRequest({ type: CMD.DISC })]));
    const handles = [];
    for (let i = 0; i < 4; i++) {
      const reply = await client.readSimpleReply();
      expect(reply.error).toBe(0);
      handles.push(reply.handle);
    }
    expect(handles.sort()).toEqual([0n, 1n, 2n, 3n]);
    expect(await client.closedWithin(2000)).toBe(true);
  });

  test('a client that half-closes after sending its requests still gets every reply', async () => {
    const client = await open();
    layer.delayMs = 50;
    client.socket.end(Buffer.concat([1n, 2n].map((handle) => encodeRequest({ type: CMD.READ, handle, length: 4096 }))));
    for (let i = 0; i < 2; i++) {
      expect((await client.readSimpleReply()).error).toBe(0);
      await client.read(4096);
    }
    expect(await client.closedWithin(2000)).toBe(true);
    expect(fixture.warnings()).toEqual([]);
  });

  // More requests than may be in flight at once (256), small enough to arrive in one chunk with the
  // input's end: the rest wait, unread, when the end is seen; sent before it, they are run and answered.
  test.each([
    ['then DISC and a half-close', true],
    ['then a half-close', false],
  ])('more requests than may be in flight, %s: every one is run and answered', async (_, disc) => {
    const client = await open();
    layer.delayMs = 20;
    const count = 300;
    const payload = (i: number) => Buffer.alloc(16, (i % 251) + 1);
    const writes = Array.from({ length: count }, (_, i) => encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 4096, length: 16, payload: payload(i) }));
    client.socket.end(Buffer.concat([...writes, ...(disc ? [encodeRequest({ type: CMD.DISC })] : [])]));
    const handles = new Set<bigint>();
    for (let i = 0; i < count; i++) {
      const reply = await client.readSimpleReply();
      expect(reply.error).toBe(0);
      handles.add(reply.handle);
    }
    expect(handles.size).toBe(count);
    expect(await client.closedWithin(2000)).toBe(true);
    layer.delayMs = 0;
    const reader = await open();
    for (const i of [0, 255, 256, count - 1]) expect((await reader.readData(i * 4096, 16)).equals(payload(i))).toBe(true);
  });

  test('a slow request does not hold back faster ones: replies come in completion order', async () => {
    const slow = await open();
    layer.delayMs = 300;
    slow.sendRequest({ type: CMD.READ, handle: 1n, length: 4096 });
    await waitFor(() => layer.inFlight === 1); // the slow read is in the device
    layer.delayMs = 0;
    slow.sendRequest({ type: CMD.FLUSH, handle: 2n });
    expect((await slow.readSimpleReply()).handle).toBe(2n);
    expect((await slow.readSimpleReply()).handle).toBe(1n);
    await slow.read(4096);
  });

  test('pipelined requests past the in-flight and memory limits, from a client slow to read, are all answered', async () => {
    const client = await open('disk');
    const count = 3000;
    const lengthOf = (i: number) => (i % 2 ? 64 * KiB : 4 * KiB); // ~100 MB of replies in all
    client.socket.pause();
    const reads = Array.from({ length: count }, (_, i) =>
      encodeRequest({ type: CMD.READ, handle: BigInt(i), offset: (i % 200) * 64 * KiB, length: lengthOf(i) }),
    );
    client.socket.write(Buffer.concat(reads));
    await new Promise((resolve) => setTimeout(resolve, 500));
    client.socket.resume();
    const seen = new Set<bigint>();
    for (let i = 0; i < count; i++) {
      const reply = await client.readSimpleReply();
      expect(reply.error).toBe(0);
      seen.add(reply.handle);
      await client.read(lengthOf(Number(reply.handle)));
    }
    expect(seen.size).toBe(count);
  });

  test('a connection closed for a wrong magic with more input unread still delivers every reply before it: no reset', async () => {
    const client = await open('disk');
    client.socket.pause(); // slow to read: the reply cannot all leave before the connection is done
    const read = encodeRequest({ type: CMD.READ, handle: 7n, offset: 0, length: 8 * MiB });
    client.socket.write(Buffer.concat([read, Buffer.alloc(28, 0xff), Buffer.alloc(256 * KiB, 0xee)]));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    client.socket.resume();
    expect(await client.readSimpleReply()).toMatchObject({ error: 0, handle: 7n });
    expect((await client.read(8 * MiB)).length).toBe(8 * MiB);
    expect(await client.closedWithin(2000)).toBe(true);
  });

  test('a misbehaving connection does not disturb concurrent ones', async () => {
    const workers = await Promise.all([0, 1, 2, 3].map(() => open('disk')));
    const rogue = await open('disk');
    expect(fixture.server.connectionCount()).toBe(5);
    rogue.socket.write(Buffer.alloc(64, 0xff));
    const work = workers.map(async (client, w) => {
      for (let round = 0; round < 20; round++) {
        const offset = MiB + (w * 20 + round) * 8192;
        const data = Buffer.alloc(8192, w * 20 + round);
        expect(await client.write(offset, data)).toBe(0);
        expect((await client.readData(offset, 8192)).equals(data)).toBe(true);
      }
    });
    await Promise.all(work);
    expect(await rogue.closedWithin(2000)).toBe(true);
    expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD: request with a wrong magic; disconnecting']);
  });
});

/** Another client, holding nothing, gets a 4 KiB read of export "big" answered within 5 s. */
async function expectReadServed(fixture: NbdFixture): Promise<void> {
  const { client: reader } = await RawNbdClient.open(fixture.port, 'big');
  try {
    const served = reader.readData(0, 4 * KiB).then((data) => data.length);
    expect(await Promise.race([served, new Promise((resolve) => setTimeout(() => resolve('not served within 5 s'), 5000))])).toBe(4 * KiB);
  } finally {
    reader.destroy();
  }
}

describe('clients that read none of their replies', () => {
  test("are cut once the node's budget is full and no reply has left for drainTimeoutMs; a client that reads is served", async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 64 * MiB }], { drainTimeoutMs: 300, maxInFlightBytes: 16 * MiB, maxConnectionInFlightBytes: 32 * MiB });
    const holders: RawNbdClient[] = [];
    try {
      // Two clients hold the node's budget with replies they do not read (as stopped VMs), and a third,
      // holding nothing, takes one READ as large as the overdraft: past it, not even a connection that
      // holds nothing takes a request.
      // Replies of 16 MiB: more than the kernel's socket buffers take, so that they wait in weftd.
      for (const reads of [3, 3, 0]) {
        const { client } = await RawNbdClient.open(fixture.port, 'big');
        holders.push(client);
        client.socket.pause();
        for (let i = 0; i < reads; i++) client.sendRequest({ type: CMD.READ, handle: BigInt(i), offset: i * 16 * MiB, length: 16 * MiB });
        if (reads === 0) client.sendRequest({ type: CMD.READ, handle: 99n, offset: 0, length: 32 * MiB });
        await waitFor(() => fixture.server.inFlightBytes() > 0);
      }
      await expectReadServed(fixture);
      // Cut: those whose replies still wait in weftd (one whose replies all fit in the kernel's socket
      // buffers holds nothing more, and may stay).
      const cut = () => fixture.warnings().filter((w) => w.msg === "NBD: nothing of the client's replies has left for 300 ms while the node's in-flight budget is full (it reads nothing); disconnecting").length;
      expect(cut()).toBeGreaterThan(0);
      await waitFor(() => fixture.server.connectionCount() === holders.length - cut()); // the reader has gone too
    } finally {
      for (const holder of holders) holder.destroy();
      await fixture.stop();
    }
  });

  // The requests it sent after those the budget let in are held back unread. Once it is cut, they
  // must not run: the replies of its cut requests, let go, made room, and the held-back ones ran.
  test('the requests a cut client sent after those the budget let in never run', async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 64 * MiB }], { drainTimeoutMs: 300, maxInFlightBytes: 16 * MiB, maxConnectionInFlightBytes: 32 * MiB });
    const { client } = await RawNbdClient.open(fixture.port, 'big');
    try {
      client.socket.pause();
      // One socket write: the READ takes the budget, and the WRITEs behind it are held back.
      const reads = [encodeRequest({ type: CMD.READ, handle: 0n, offset: 0, length: 16 * MiB })];
      const writes = [0, 1, 2, 3].map((i) => encodeRequest({ type: CMD.WRITE, handle: BigInt(10 + i), offset: 60 * MiB + i * 4 * KiB, length: 4 * KiB, payload: Buffer.alloc(4 * KiB, 0xab) }));
      client.socket.write(Buffer.concat([...reads, ...writes]));
      await waitFor(() => fixture.warnings().some((w) => /nothing of the client's replies has left/.test(w.msg)), 10_000, 20);
      await waitFor(() => fixture.server.connectionCount() === 0, 10_000, 20);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { client: reader } = await RawNbdClient.open(fixture.port, 'big');
      try {
        expect((await reader.readData(60 * MiB, 16 * KiB)).equals(Buffer.alloc(16 * KiB))).toBe(true);
      } finally {
        reader.destroy();
      }
    } finally {
      client.destroy();
      await fixture.stop();
    }
  });

  test("that send a WRITE's payload a byte at a time are cut once the node's budget is full past drainTimeoutMs; the others are served", async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 64 * MiB }], { drainTimeoutMs: 300, maxInFlightBytes: 16 * MiB });
    const tricklers: RawNbdClient[] = [];
    const drip = setInterval(() => tricklers.forEach((t) => t.socket.destroyed || t.socket.write(Buffer.alloc(1, 0x5a))), 100);
    try {
      // Each holds a 16 MiB payload's room while never going silent for the drain deadline: three
      // take the node's budget and its overdraft (32 MiB, the largest request).
      for (let i = 0; i < 3; i++) {
        const { client } = await RawNbdClient.open(fixture.port, 'big');
        tricklers.push(client);
        client.socket.write(encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 16 * MiB, length: 16 * MiB }));
        await waitFor(() => fixture.server.inFlightBytes() >= (i + 1) * 16 * MiB);
      }
      await expectReadServed(fixture);
      const cut = fixture.warnings().filter((w) => /a WRITE's payload still coming after 300 ms while the node's in-flight budget is full/.test(w.msg));
      expect(cut.length).toBeGreaterThan(0);
    } finally {
      clearInterval(drip);
      for (const trickler of tricklers) trickler.destroy();
      await fixture.stop();
    }
  });

  test('are left alone while the budget has room: they harm no one, and get every reply once they read', async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 64 * MiB }], { drainTimeoutMs: 300 });
    const { client } = await RawNbdClient.open(fixture.port, 'big');
    try {
      client.socket.pause();
      for (let i = 0; i < 8; i++) client.sendRequest({ type: CMD.READ, handle: BigInt(i), offset: i * 4 * MiB, length: 4 * MiB });
      await new Promise((resolve) => setTimeout(resolve, 1500)); // five drain deadlines
      client.socket.resume();
      for (let i = 0; i < 8; i++) {
        expect((await client.readSimpleReply()).error).toBe(0);
        await client.read(4 * MiB);
      }
      expect(fixture.warnings()).toEqual([]);
    } finally {
      client.destroy();
      await fixture.stop();
    }
  });
});

describe('NbdServer.close', () => {
  test('answers requests in flight, closes every connection and stops listening', async () => {
    let layer: TestLayer | undefined;
    const fixture = await NbdFixture.start([{ name: 'slow', sizeBytes: MiB, layer: (device) => (layer = new TestLayer(device)) }]);
    try {
      const { client } = await RawNbdClient.open(fixture.port, 'slow');
      const haggling = await RawNbdClient.connect(fixture.port);
      (layer as TestLayer).delayMs = 200;
      client.sendRequest({ type: CMD.READ, handle: 42n, length: 4096 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(fixture.server.connectionCount()).toBe(2);
      const closing = fixture.server.close();
      expect(await client.readSimpleReply()).toEqual({ error: 0, handle: 42n });
      expect((await client.read(4096)).length).toBe(4096);
      await closing;
      expect(await client.closedWithin(1000)).toBe(true);
      expect(await haggling.closedWithin(1000)).toBe(true);
      expect(fixture.server.connectionCount()).toBe(0);
      expect(fixture.exports.closes).toBe(fixture.exports.opens);
      await expect(RawNbdClient.connect(fixture.port)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await fixture.stop();
    }
  });

  test('a client that reads none of its replies does not hold up the close: it is cut once drainTimeoutMs has passed', async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 32 * MiB }], { drainTimeoutMs: 300 });
    const { client } = await RawNbdClient.open(fixture.port, 'big');
    try {
      client.socket.pause(); // as a stopped VM: its receive window fills, then nothing more leaves
      for (let i = 0; i < 8; i++) client.sendRequest({ type: CMD.READ, handle: BigInt(i), offset: i * 4 * MiB, length: 4 * MiB });
      await waitFor(() => fixture.server.inFlightBytes() > 0);
      const closing = fixture.server.close().then(() => 'closed');
      expect(await Promise.race([closing, new Promise((resolve) => setTimeout(() => resolve('still waiting'), 5000))])).toBe('closed');
      expect(fixture.server.connectionCount()).toBe(0);
      expect(fixture.exports.closes).toBe(fixture.exports.opens);
      expect(fixture.warnings().map((w) => w.msg)).toEqual([expect.stringMatching(/did not read its last replies within 300 ms/)]);
    } finally {
      client.destroy();
      await fixture.stop();
    }
  });

  test('a client that stops in the middle of a WRITE (its payload cut short) is cut once it has sent nothing for drainTimeoutMs: what it sent is not held for good', async () => {
    const fixture = await NbdFixture.start([{ name: 'big', sizeBytes: 32 * MiB }], { drainTimeoutMs: 300 });
    const { client } = await RawNbdClient.open(fixture.port, 'big');
    try {
      client.sendRequest({ type: CMD.WRITE, handle: 1n, offset: 0, length: MiB, payload: Buffer.alloc(MiB - 1000, 0x11) }); // 1000 bytes short
      expect(await client.closedWithin(5000)).toBe(true);
      expect(fixture.warnings().map((w) => w.msg)).toEqual([expect.stringMatching(/sent nothing for 300 ms in the middle of a request/)]);
      await waitFor(() => fixture.server.connectionCount() === 0);
      expect(fixture.exports.closes).toBe(fixture.exports.opens);
    } finally {
      client.destroy();
      await fixture.stop();
    }
  });

  test('rejects a maximum request size it cannot serve', () => {
    const options = { provider: { names: () => [], open: () => undefined }, logger: pino({ level: 'silent' }) };
    expect(() => new NbdServer({ ...options, maxRequestBytes: 100 })).toThrow(RangeError);
    expect(() => new NbdServer({ ...options, maxRequestBytes: 2 ** 32 })).toThrow(RangeError);
  });
});
