// Option haggling over a raw socket: each option's replies and error values as the spec gives
// them, disconnects where the spec calls for one, and the server still healthy afterwards.

import { NbdFixture } from './fixture';
import { CMD, encodeRequest, INFO, IHAVEOPT, infoRequest, metaContextRequest, OPT, RawNbdClient, REP, TFLAG } from '../helpers/nbd-raw-client';

const MiB = 1024 * 1024;

describe('NBD handshake (raw socket)', () => {
  let fixture: NbdFixture;
  const clients: RawNbdClient[] = [];

  /** Connects, reads the greeting and sends the client flags (fixed newstyle + no zeroes). */
  async function haggle(clientFlags = 3): Promise<RawNbdClient> {
    const client = await RawNbdClient.connect(fixture.port);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(clientFlags);
    return client;
  }

  beforeAll(async () => {
    fixture = await NbdFixture.start([
      { name: 'disk', sizeBytes: 8 * MiB },
      { name: 'ro', sizeBytes: MiB, readOnly: true, answers: { canMultiConn: true } },
    ]);
  });

  beforeEach(async () => {
    fixture.logs.length = 0;
    await fixture.seed('disk');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await fixture.expectIntact('disk');
    await fixture.exportsClosed();
  });

  afterAll(async () => {
    await fixture?.stop();
  });

  test('greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES', async () => {
    const client = await RawNbdClient.connect(fixture.port);
    clients.push(client);
    expect(await client.readGreeting()).toBe(3);
  });

  test('unknown client flags end the connection, with a warning naming the peer', async () => {
    const client = await haggle(0x4 | 3);
    expect(await client.closedWithin(2000)).toBe(true);
    const [warning] = fixture.warnings();
    expect(warning.msg).toMatch(/unknown client flags/);
    expect(warning.peer).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test('NBD_OPT_LIST names every export; with data it is NBD_REP_ERR_INVALID', async () => {
    const client = await haggle();
    const replies = await client.optionExchange(OPT.LIST);
    expect(replies.map((reply) => reply.type)).toEqual([REP.SERVER, REP.SERVER, REP.ACK]);
    const names = replies.slice(0, 2).map((reply) => reply.data.subarray(4, 4 + reply.data.readUInt32BE(0)).toString());
    expect(names).toEqual(['disk', 'ro']);
    const invalid = await client.optionExchange(OPT.LIST, Buffer.from('x'));
    expect(invalid.map((reply) => reply.type)).toEqual([REP.ERR_INVALID]);
  });

  test('NBD_OPT_INFO answers export, name and block sizes (no description: exports have none), then GO works', async () => {
    const client = await haggle();
    const replies = await client.optionExchange(OPT.INFO, infoRequest('disk', [INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE]));
    expect(replies[replies.length - 1].type).toBe(REP.ACK);
    const infos = new Map(replies.filter((reply) => reply.type === REP.INFO).map((reply) => [reply.data.readUInt16BE(0), reply.data]));
    const exportInfo = infos.get(INFO.EXPORT) as Buffer;
    expect(exportInfo.length).toBe(12);
    expect(Number(exportInfo.readBigUInt64BE(2))).toBe(8 * MiB);
    const flags = exportInfo.readUInt16BE(10);
    const expected = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES;
    expect(flags).toBe(expected);
    expect(infos.get(INFO.NAME)?.subarray(2).toString()).toBe('disk');
    expect(infos.has(INFO.DESCRIPTION)).toBe(false);
    const blockSize = infos.get(INFO.BLOCK_SIZE) as Buffer;
    expect([blockSize.readUInt32BE(2), blockSize.readUInt32BE(6), blockSize.readUInt32BE(10)]).toEqual([1, 4096, 32 * MiB]);
    const go = await client.optionExchange(OPT.GO, infoRequest('disk', []));
    expect(go[go.length - 1].type).toBe(REP.ACK);
    expect((await client.readData(0, 16)).length).toBe(16);
  });

  test('transmission flags: READ_ONLY without FUA/TRIM/WRITE_ZEROES, CAN_MULTI_CONN, DF only with structured replies', async () => {
    const plain = await RawNbdClient.open(fixture.port, 'ro');
    clients.push(plain.client);
    expect(plain.transmissionFlags).toBe(TFLAG.HAS_FLAGS | TFLAG.READ_ONLY | TFLAG.SEND_FLUSH | TFLAG.CAN_MULTI_CONN);
    const structured = await RawNbdClient.open(fixture.port, 'disk', { structured: true });
    clients.push(structured.client);
    expect(structured.transmissionFlags & TFLAG.SEND_DF).toBe(TFLAG.SEND_DF);
    expect(structured.transmissionFlags & TFLAG.CAN_MULTI_CONN).toBe(0);
  });

  test('NBD_OPT_INFO and NBD_OPT_GO on an unknown export: NBD_REP_ERR_UNKNOWN, and haggling goes on', async () => {
    const client = await haggle();
    expect((await client.optionExchange(OPT.INFO, infoRequest('nope', []))).map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    expect((await client.optionExchange(OPT.GO, infoRequest('nope', []))).map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    expect((await client.optionExchange(OPT.GO, infoRequest('disk', [])))[0].type).toBe(REP.INFO);
    expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD handshake: no such export', 'NBD handshake: no such export']);
  });

  test.each([
    ['name length beyond the data', Buffer.from([0, 0, 0, 9, 0x64, 0, 0])],
    ['trailing bytes', Buffer.concat([infoRequest('disk', []), Buffer.from([1])])],
    ['too short for the request count', Buffer.from([0, 0, 0, 0, 0, 2, 0, 1])],
  ])('a malformed NBD_OPT_GO (%s) gets NBD_REP_ERR_INVALID', async (_case, data) => {
    const client = await haggle();
    expect((await client.optionExchange(OPT.GO, data)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    expect(fixture.warnings()).toHaveLength(1);
    await client.expectAck(OPT.STRUCTURED_REPLY);
  });

  test('unknown options get NBD_REP_ERR_UNSUP; STARTTLS too (no TLS), and INVALID if it carries data', async () => {
    const client = await haggle();
    expect((await client.optionExchange(99, Buffer.from('ignored'))).map((r) => r.type)).toEqual([REP.ERR_UNSUP]);
    expect((await client.optionExchange(OPT.STARTTLS)).map((r) => r.type)).toEqual([REP.ERR_UNSUP]);
    expect((await client.optionExchange(OPT.STARTTLS, Buffer.from('x'))).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    await client.expectAck(OPT.STRUCTURED_REPLY);
  });

  test('meta context options before NBD_OPT_STRUCTURED_REPLY are NBD_REP_ERR_INVALID', async () => {
    const client = await haggle();
    const request = metaContextRequest('disk', ['base:allocation']);
    expect((await client.optionExchange(OPT.SET_META_CONTEXT, request)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    expect((await client.optionExchange(OPT.LIST_META_CONTEXT, request)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
  });

  test('NBD_OPT_STRUCTURED_REPLY with data is NBD_REP_ERR_INVALID', async () => {
    const client = await haggle();
    expect((await client.optionExchange(OPT.STRUCTURED_REPLY, Buffer.from('x'))).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
  });

  test('NBD_OPT_LIST_META_CONTEXT lists base:allocation for no query, "base:" and the full name only', async () => {
    const client = await haggle();
    await client.expectAck(OPT.STRUCTURED_REPLY);
    for (const queries of [[], ['base:'], ['base:allocation'], ['x-other:thing', 'base:allocation']]) {
      const replies = await client.optionExchange(OPT.LIST_META_CONTEXT, metaContextRequest('disk', queries));
      expect(replies.map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
      expect(replies[0].data.subarray(4).toString()).toBe('base:allocation');
    }
    const none = await client.optionExchange(OPT.LIST_META_CONTEXT, metaContextRequest('disk', ['x-other:thing']));
    expect(none.map((r) => r.type)).toEqual([REP.ACK]);
    const bad = await client.optionExchange(OPT.LIST_META_CONTEXT, Buffer.from([0, 0, 0, 4, 0x64]));
    expect(bad.map((r) => r.type)).toEqual([REP.ERR_INVALID]);
  });

  test('NBD_OPT_SET_META_CONTEXT selects base:allocation with a nonzero id; "base:" selects nothing', async () => {
    const client = await haggle();
    await client.expectAck(OPT.STRUCTURED_REPLY);
    const selected = await client.setMetaContext('disk', ['base:allocation', 'x-other:thing']);
    expect(selected.map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    expect(selected[0].data.readUInt32BE(0)).not.toBe(0);
    expect(selected[0].data.subarray(4).toString()).toBe('base:allocation');
    expect((await client.setMetaContext('disk', ['base:'])).map((r) => r.type)).toEqual([REP.ACK]);
  });

  test('a client that sends options without reading replies gets them all, in order, once it reads', async () => {
    // Each NBD_OPT_GO for an unknown 4000-byte name is answered with an error naming it: 16 MB of
    // replies, more than socket buffers hold, so the server must wait for the client to read.
    const client = await haggle();
    const count = 4000;
    const names = Array.from({ length: count }, (_, i) => `${i}-`.padEnd(4000, 'x'));
    const options = names.map((name) => {
      const data = infoRequest(name, []);
      const header = Buffer.alloc(16);
      header.writeBigUInt64BE(IHAVEOPT, 0);
      header.writeUInt32BE(OPT.GO, 8);
      header.writeUInt32BE(data.length, 12);
      return Buffer.concat([header, data]);
    });
    client.socket.pause();
    client.socket.write(Buffer.concat(options));
    await new Promise((resolve) => setTimeout(resolve, 300));
    client.socket.resume();
    const wrong: number[] = [];
    for (let i = 0; i < count; i++) {
      const reply = await client.readOptionReply();
      if (reply.type !== REP.ERR_UNKNOWN || !reply.data.toString().includes(names[i])) wrong.push(i);
    }
    expect(wrong).toEqual([]);
    fixture.logs.length = 0;
  });

  test('option data longer than 64 KiB ends the connection', async () => {
    const client = await haggle();
    client.sendOption(OPT.LIST, Buffer.alloc(0), IHAVEOPT, 64 * 1024 + 1);
    expect(await client.closedWithin(2000)).toBe(true);
    expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD handshake: option data too long; disconnecting']);
  });

  test('an option without the IHAVEOPT magic ends the connection', async () => {
    const client = await haggle();
    client.sendOption(OPT.LIST, Buffer.alloc(0), 0x1234n);
    expect(await client.closedWithin(2000)).toBe(true);
    expect(fixture.warnings()).toHaveLength(1);
  });

  test('NBD_OPT_ABORT is acknowledged and the server closes', async () => {
    const client = await haggle();
    await client.expectAck(OPT.ABORT);
    expect(await client.closedWithin(2000)).toBe(true);
    expect(fixture.warnings()).toEqual([]);
  });

  test('NBD_OPT_EXPORT_NAME: size and flags, 124 zeroes unless NO_ZEROES was agreed', async () => {
    const withZeroes = await haggle(1);
    withZeroes.sendOption(OPT.EXPORT_NAME, Buffer.from('disk'));
    const reply = await withZeroes.read(134);
    expect(Number(reply.readBigUInt64BE(0))).toBe(8 * MiB);
    expect(reply.readUInt16BE(8) & TFLAG.HAS_FLAGS).toBe(1);
    expect(reply.subarray(10).every((byte) => byte === 0)).toBe(true);
    expect((await withZeroes.readData(0, 8)).length).toBe(8);

    const noZeroes = await haggle(3);
    noZeroes.sendOption(OPT.EXPORT_NAME, Buffer.from('disk'));
    expect(Number((await noZeroes.read(10)).readBigUInt64BE(0))).toBe(8 * MiB);
    expect((await noZeroes.readData(0, 8)).length).toBe(8);
  });

  test('requests sent in the same packet as NBD_OPT_GO are not lost', async () => {
    const client = await haggle();
    const go = Buffer.concat([Buffer.alloc(16), infoRequest('disk', [])]);
    go.writeBigUInt64BE(IHAVEOPT, 0);
    go.writeUInt32BE(OPT.GO, 8);
    go.writeUInt32BE(go.length - 16, 12);
    client.socket.write(Buffer.concat([go, encodeRequest({ type: CMD.READ, handle: 77n, length: 512 })]));
    let reply = await client.readOptionReply();
    while (reply.type !== REP.ACK) reply = await client.readOptionReply();
    expect(await client.readSimpleReply()).toEqual({ error: 0, handle: 77n });
    expect((await client.read(512)).length).toBe(512);
  });

  test('NBD_OPT_EXPORT_NAME on an unknown export closes the connection', async () => {
    const client = await haggle();
    client.sendOption(OPT.EXPORT_NAME, Buffer.from('nope'));
    expect(await client.closedWithin(2000)).toBe(true);
    expect(fixture.warnings().map((w) => w.msg)).toEqual(['NBD handshake: no such export']);
  });

  test('a client that leaves mid-handshake is cleaned up', async () => {
    const client = await haggle();
    client.socket.write(Buffer.from([0x49, 0x48, 0x41])); // part of an option header
    client.destroy();
    await client.closed;
  });
});
