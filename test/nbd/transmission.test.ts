// Transmission requests over a raw socket: data round trips, concurrency, and every kind of bad
// request with the exact error value the spec asks for, the stream kept in sync after each one.

import { NbdFixture } from './fixture';
import { CMD, CMD_FLAG, encodeRequest, ERR, RawNbdClient, REPLY_TYPE, type Request } from '../helpers/nbd-raw-client';

const KiB = 1024;
const MiB = 1024 * KiB;
const DISK_BYTES = 8 * MiB;
const MAX_REQUEST_BYTES = MiB;

describe('NBD transmission (raw socket)', () => {
  let fixture: NbdFixture;
  const clients: RawNbdClient[] = [];

  async function open(exportName = 'disk', options: Parameters<typeof RawNbdClient.open>[2] = {}): Promise<RawNbdClient> {
    const { client } = await RawNbdClient.open(fixture.port, exportName, options);
    clients.push(client);
    return client;
  }

  /** Sends one request and returns the error value of its simple reply. */
  async function simpleError(client: RawNbdClient, request: Request): Promise<number> {
    client.sendRequest(request);
    const reply = await client.readSimpleReply();
    expect(reply.handle).toBe(request.handle ?? 0x1122334455667788n);
    return reply.error;
  }

  /** Exactly one warning was logged since the test began, naming the peer. */
  function expectOneWarning(pattern: RegExp): void {
    const warnings = fixture.warnings();
    expect(warnings.map((w) => w.msg)).toEqual([expect.stringMatching(pattern)]);
    expect(warnings[0].peer).toMatch(/^127\.0\.0\.1:\d+$/);
    fixture.logs.length = 0;
  }

  beforeAll(async () => {
    fixture = await NbdFixture.start(
      [
        { name: 'disk', sizeBytes: DISK_BYTES },
        { name: 'ro', sizeBytes: MiB, readOnly: true },
      ],
      { maxRequestBytes: MAX_REQUEST_BYTES },
    );
  });

  beforeEach(async () => {
    fixture.logs.length = 0;
    await fixture.seed('disk');
    await fixture.seed('ro');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await fixture.expectIntact('disk');
    await fixture.expectIntact('ro');
    await fixture.exportsClosed();
    expect(fixture.warnings()).toEqual([]);
  });

  afterAll(async () => {
    await fixture?.stop();
  });

  describe('with simple replies', () => {
    test('WRITE then READ round-trips data and echoes every handle bit', async () => {
      const client = await open();
      const data = Buffer.alloc(12345, 0x3c);
      client.sendRequest({ type: CMD.WRITE, handle: 0xffffffffffffffffn, offset: 100000, length: data.length, payload: data });
      expect(await client.readSimpleReply()).toEqual({ error: 0, handle: 0xffffffffffffffffn });
      client.sendRequest({ type: CMD.READ, handle: 0x8000000000000001n, offset: 100000, length: data.length });
      expect(await client.readSimpleReply()).toEqual({ error: 0, handle: 0x8000000000000001n });
      expect((await client.read(data.length)).equals(data)).toBe(true);
    });

    test('many pipelined WRITEs and READs are all answered, each under its own handle', async () => {
      const client = await open();
      const count = 64;
      const block = (i: number) => Buffer.alloc(4 * KiB, i + 1);
      const writes = Array.from({ length: count }, (_, i) =>
        encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: MiB + i * 4 * KiB, length: 4 * KiB, payload: block(i) }),
      );
      client.socket.write(Buffer.concat(writes));
      const written = new Set<bigint>();
      for (let i = 0; i < count; i++) {
        const reply = await client.readSimpleReply();
        expect(reply.error).toBe(0);
        written.add(reply.handle);
      }
      expect(written.size).toBe(count);
      const reads = Array.from({ length: count }, (_, i) =>
        encodeRequest({ type: CMD.READ, handle: BigInt(1000 + i), offset: MiB + i * 4 * KiB, length: 4 * KiB }),
      );
      client.socket.write(Buffer.concat(reads));
      for (let i = 0; i < count; i++) {
        const reply = await client.readSimpleReply();
        expect(reply.error).toBe(0);
        const data = await client.read(4 * KiB);
        expect(data.equals(block(Number(reply.handle) - 1000))).toBe(true);
      }
    });

    test('FLUSH succeeds (also with FUA); with a nonzero length it is EINVAL', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.FLUSH })).toBe(0);
      expect(await simpleError(client, { type: CMD.FLUSH, flags: CMD_FLAG.FUA })).toBe(0);
      expect(await simpleError(client, { type: CMD.FLUSH, length: 4096 })).toBe(ERR.EINVAL);
      expectOneWarning(/FLUSH with a nonzero offset or length/);
    });

    test('WRITE with FUA, WRITE_ZEROES with NO_HOLE and FUA, and TRIM all reach the device', async () => {
      const client = await open();
      expect(await client.write(2 * MiB, Buffer.alloc(64 * KiB, 0x11), CMD_FLAG.FUA)).toBe(0);
      expect(await simpleError(client, { type: CMD.WRITE_ZEROES, flags: CMD_FLAG.NO_HOLE | CMD_FLAG.FUA, offset: 2 * MiB, length: 16 * KiB })).toBe(0);
      expect(await simpleError(client, { type: CMD.TRIM, offset: 2 * MiB + 48 * KiB, length: 16 * KiB })).toBe(0);
      const data = await client.readData(2 * MiB, 64 * KiB);
      expect(data.subarray(0, 16 * KiB).every((b) => b === 0)).toBe(true);
      expect(data.subarray(16 * KiB, 48 * KiB).every((b) => b === 0x11)).toBe(true);
      expect(data.subarray(48 * KiB).every((b) => b === 0)).toBe(true);
    });

    test('FUA is accepted on READ (valid on every command once SEND_FUA is advertised)', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.READ, flags: CMD_FLAG.FUA, length: 512 })).toBe(0);
      await client.read(512);
    });

    test.each([
      ['READ', 'EINVAL', CMD.READ, ERR.EINVAL],
      ['TRIM', 'EINVAL', CMD.TRIM, ERR.EINVAL],
      ['WRITE_ZEROES', 'ENOSPC', CMD.WRITE_ZEROES, ERR.ENOSPC],
    ])('%s past the end of the export (also at offsets beyond 2^53) is %s', async (_name, _errno, type, error) => {
      const client = await open();
      expect(await simpleError(client, { type, offset: DISK_BYTES - 4096, length: 8192 })).toBe(error);
      expectOneWarning(/past the end/);
      expect(await simpleError(client, { type, offset: 0xfffffffffffffe00n, length: 512 })).toBe(error);
      expectOneWarning(/past the end/);
    });

    test('WRITE past the end is ENOSPC, its payload consumed so the next request is understood', async () => {
      const client = await open();
      expect(await client.write(DISK_BYTES - 512, Buffer.alloc(1024, 0x77))).toBe(ERR.ENOSPC);
      expectOneWarning(/WRITE past the end/);
      expect(await client.write(DISK_BYTES - 512, Buffer.alloc(512, 0x78))).toBe(0);
      expect((await client.readData(DISK_BYTES - 512, 512)).every((b) => b === 0x78)).toBe(true);
    });

    test('READ of length 0 is answered at once, with no data', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.READ, offset: 4096, length: 0 })).toBe(0);
      // No data followed that reply: the next one is where it should be.
      expect((await client.readData(0, 512)).equals(await fixture.device('disk').read(0, 512))).toBe(true);
    });

    test.each([
      ['WRITE', CMD.WRITE],
      ['TRIM', CMD.TRIM],
      ['WRITE_ZEROES', CMD.WRITE_ZEROES],
    ])('%s of length 0 is EINVAL', async (_name, type) => {
      const client = await open();
      expect(await simpleError(client, { type, offset: 4096, length: 0 })).toBe(ERR.EINVAL);
      expectOneWarning(/of length 0/);
    });

    test('READ longer than the maximum block size is EINVAL', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.READ, length: MAX_REQUEST_BYTES + 1 })).toBe(ERR.EINVAL);
      expectOneWarning(/exceeds the maximum/);
    });

    test('WRITE longer than the maximum: the payload is consumed unbuffered, EINVAL, the stream stays in sync', async () => {
      const client = await open();
      const big = Buffer.alloc(MAX_REQUEST_BYTES + 4096, 0x99);
      expect(await client.write(0, big)).toBe(ERR.EINVAL);
      expectOneWarning(/exceeds the maximum/);
      expect(await client.write(4 * MiB, Buffer.alloc(4096, 0x42))).toBe(0);
      expect((await client.readData(4 * MiB, 4096)).every((b) => b === 0x42)).toBe(true);
    });

    test('WRITE_ZEROES longer than the maximum block size is accepted (nbdcopy sends them)', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.WRITE_ZEROES, offset: 4 * MiB, length: 2 * MAX_REQUEST_BYTES })).toBe(0);
    });

    test.each([
      ['WRITE', { type: CMD.WRITE, length: 4096, payload: Buffer.alloc(4096, 1) }],
      ['TRIM', { type: CMD.TRIM, length: 4096 }],
      ['WRITE_ZEROES', { type: CMD.WRITE_ZEROES, length: 4096 }],
    ])('%s on a read-only export is EPERM and changes nothing', async (_name, request) => {
      const client = await open('ro');
      expect(await simpleError(client, request)).toBe(ERR.EPERM);
      expectOneWarning(/read-only export/);
      expect((await client.readData(0, 16)).length).toBe(16);
    });

    test.each([
      ['CACHE (not advertised)', CMD.CACHE],
      ['RESIZE', 8],
      ['an unknown command', 0x7fff],
    ])('%s is EINVAL', async (_name, type) => {
      const client = await open();
      expect(await simpleError(client, { type, length: 4096 })).toBe(ERR.EINVAL);
      expectOneWarning(/is not supported/);
    });

    test.each([
      ['an unknown flag on READ', { type: CMD.READ, flags: 0x100, length: 512 }],
      ['NO_HOLE on WRITE', { type: CMD.WRITE, flags: CMD_FLAG.NO_HOLE, length: 512, payload: Buffer.alloc(512) }],
      ['DF without structured replies', { type: CMD.READ, flags: CMD_FLAG.DF, length: 512 }],
      ['FAST_ZERO (not advertised)', { type: CMD.WRITE_ZEROES, flags: CMD_FLAG.FAST_ZERO, length: 512 }],
      ['REQ_ONE on READ', { type: CMD.READ, flags: CMD_FLAG.REQ_ONE, length: 512 }],
    ])('%s is EINVAL', async (_name, request) => {
      const client = await open();
      expect(await simpleError(client, request)).toBe(ERR.EINVAL);
      expectOneWarning(/are not valid for/);
    });

    test('BLOCK_STATUS without a negotiated context is EINVAL', async () => {
      const client = await open();
      expect(await simpleError(client, { type: CMD.BLOCK_STATUS, length: 4096 })).toBe(ERR.EINVAL);
      expectOneWarning(/without a negotiated metadata context/);
    });

    test('a wrong request magic: earlier requests are answered, then the connection closes', async () => {
      const client = await open();
      const garbage = encodeRequest({ type: CMD.READ, length: 512 });
      garbage.writeUInt32BE(0xdeadbeef, 0);
      client.socket.write(Buffer.concat([encodeRequest({ type: CMD.READ, handle: 7n, length: 512 }), garbage]));
      expect(await client.readSimpleReply()).toEqual({ error: 0, handle: 7n });
      await client.read(512);
      expect(await client.closedWithin(2000)).toBe(true);
      expectOneWarning(/wrong magic/);
    });

    test('DISC: replies to everything before it, then the server closes', async () => {
      const client = await open();
      const writes = [0, 1, 2].map((i) =>
        encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: 3 * MiB + i * 512, length: 512, payload: Buffer.alloc(512, 0xa0 + i) }),
      );
      client.socket.write(Buffer.concat([...writes, encodeRequest({ type: CMD.DISC })]));
      for (let i = 0; i < 3; i++) expect((await client.readSimpleReply()).error).toBe(0);
      expect(await client.closedWithin(2000)).toBe(true);
      const onDisk = await fixture.device('disk').read(3 * MiB, 1536);
      expect([onDisk[0], onDisk[512], onDisk[1024]]).toEqual([0xa0, 0xa1, 0xa2]);
    });
  });

  describe('with structured replies', () => {
    test('READ is one OFFSET_DATA chunk with DONE, carrying its offset', async () => {
      const client = await open('disk', { structured: true });
      client.sendRequest({ type: CMD.READ, handle: 5n, offset: 1000, length: 3000 });
      const chunk = await client.readStructuredChunk();
      expect([chunk.flags, chunk.type, chunk.handle]).toEqual([1, REPLY_TYPE.OFFSET_DATA, 5n]);
      expect(Number(chunk.payload.readBigUInt64BE(0))).toBe(1000);
      const expected = await fixture.device('disk').read(1000, 3000);
      expect(chunk.payload.subarray(8).equals(expected)).toBe(true);
    });

    test('READ of length 0 is one NONE chunk with DONE', async () => {
      const client = await open('disk', { structured: true });
      client.sendRequest({ type: CMD.READ, handle: 6n, offset: 4096, length: 0 });
      const chunk = await client.readStructuredChunk();
      expect([chunk.flags, chunk.type, chunk.handle, chunk.payload.length]).toEqual([1, REPLY_TYPE.NONE, 6n, 0]);
    });

    test('READ with DF is one chunk; over the maximum with DF it is EOVERFLOW, without DF EINVAL', async () => {
      const client = await open('disk', { structured: true });
      client.sendRequest({ type: CMD.READ, flags: CMD_FLAG.DF, length: 64 * KiB });
      expect((await client.readStructuredChunk()).payload.length).toBe(8 + 64 * KiB);
      client.sendRequest({ type: CMD.READ, flags: CMD_FLAG.DF, length: MAX_REQUEST_BYTES + 1 });
      expect(errorOf(await client.readStructuredChunk())).toBe(ERR.EOVERFLOW);
      client.sendRequest({ type: CMD.READ, length: MAX_REQUEST_BYTES + 1 });
      expect(errorOf(await client.readStructuredChunk())).toBe(ERR.EINVAL);
      fixture.logs.length = 0;
    });

    test('a failed READ is an ERROR chunk with DONE and a message, never a simple reply', async () => {
      const client = await open('disk', { structured: true });
      client.sendRequest({ type: CMD.READ, handle: 9n, offset: DISK_BYTES, length: 512 });
      const chunk = await client.readStructuredChunk();
      expect([chunk.flags, chunk.type, chunk.handle]).toEqual([1, REPLY_TYPE.ERROR, 9n]);
      expect(errorOf(chunk)).toBe(ERR.EINVAL);
      const messageBytes = chunk.payload.readUInt16BE(4);
      expect(chunk.payload.length).toBe(6 + messageBytes);
      expect(chunk.payload.subarray(6).toString()).toMatch(/past the end/);
      expectOneWarning(/past the end/);
    });

    test('errors of other commands are ERROR chunks too; successes may be simple replies', async () => {
      const client = await open('ro', { structured: true });
      client.sendRequest({ type: CMD.TRIM, length: 512 });
      expect(errorOf(await client.readStructuredChunk())).toBe(ERR.EPERM);
      expectOneWarning(/read-only/);
      client.sendRequest({ type: CMD.FLUSH });
      expect((await client.readSimpleReply()).error).toBe(0);
    });

    test('BLOCK_STATUS answers one base:allocation chunk under the negotiated id', async () => {
      const { client } = await RawNbdClient.open(fixture.port, 'disk', { structured: true, metaContexts: ['base:allocation'] });
      clients.push(client);
      client.sendRequest({ type: CMD.BLOCK_STATUS, handle: 3n, offset: 4096, length: MiB });
      const chunk = await client.readStructuredChunk();
      expect([chunk.flags, chunk.type, chunk.handle]).toEqual([1, REPLY_TYPE.BLOCK_STATUS, 3n]);
      expect(chunk.payload.readUInt32BE(0)).toBe(1);
      expect(chunk.payload.length).toBe(12);
      expect([chunk.payload.readUInt32BE(4), chunk.payload.readUInt32BE(8)]).toEqual([MiB, 0]);
      client.sendRequest({ type: CMD.BLOCK_STATUS, flags: CMD_FLAG.REQ_ONE, offset: 0, length: 4096 });
      const one = await client.readStructuredChunk();
      expect(one.payload.length).toBe(12);
      expect(one.payload.readUInt32BE(4)).toBeLessThanOrEqual(4096);
    });

    test('BLOCK_STATUS past the end is EINVAL', async () => {
      const { client } = await RawNbdClient.open(fixture.port, 'disk', { structured: true, metaContexts: ['base:allocation'] });
      clients.push(client);
      client.sendRequest({ type: CMD.BLOCK_STATUS, offset: DISK_BYTES - 512, length: 1024 });
      expect(errorOf(await client.readStructuredChunk())).toBe(ERR.EINVAL);
      expectOneWarning(/past the end/);
    });

    test('BLOCK_STATUS is EINVAL when the context was selected for another export', async () => {
      const { client } = await RawNbdClient.open(fixture.port, 'disk', { structured: true, metaContexts: [] });
      clients.push(client);
      client.sendRequest({ type: CMD.BLOCK_STATUS, length: 512 });
      expect(errorOf(await client.readStructuredChunk())).toBe(ERR.EINVAL);
      expectOneWarning(/without a negotiated metadata context/);
    });
  });
});

function errorOf(chunk: { type: number; payload: Buffer }): number {
  expect(chunk.type).toBe(REPLY_TYPE.ERROR);
  return chunk.payload.readUInt32BE(0);
}
