// The transmission flags a client sees follow the capability answers of the export's device, and
// the server accepts exactly what it advertised: a layer that changes an answer changes both.

import type { Answers } from '../helpers/answering-device';
import { CMD, CMD_FLAG, ERR, RawNbdClient, TFLAG, type Request } from '../helpers/nbd-raw-client';
import { run } from '../helpers/weftd';
import { NbdFixture } from './fixture';

const MiB = 1024 * 1024;

/** What nbdinfo --json says of the flags that come from the device. */
interface SeenFlags {
  is_read_only: boolean;
  can_multi_conn: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_fast_zero: boolean;
}

const exportsAndFlags: [name: string, readOnly: boolean, answers: Answers | undefined, seen: SeenFlags][] = [
  // The file device as it is: writable, no multi-conn, no fast zero.
  ['plain', false, undefined, { is_read_only: false, can_multi_conn: false, can_fua: true, can_trim: true, can_zero: true, can_fast_zero: false }],
  ['multi-fast', false, { canMultiConn: true, canFastZero: true }, { is_read_only: false, can_multi_conn: true, can_fua: true, can_trim: true, can_zero: true, can_fast_zero: true }],
  // FAST_ZERO needs WRITE_ZEROES: the protocol forbids one without the other.
  ['bare', false, { canFua: false, canTrim: false, canZero: false, canFastZero: true }, { is_read_only: false, can_multi_conn: false, can_fua: false, can_trim: false, can_zero: false, can_fast_zero: false }],
  // A read-only export offers nothing that writes, whatever its device answers.
  ['ro', true, { canMultiConn: true, canFua: true, canTrim: true, canZero: true, canFastZero: true }, { is_read_only: true, can_multi_conn: true, can_fua: false, can_trim: false, can_zero: false, can_fast_zero: false }],
];

let fixture: NbdFixture;
const clients: RawNbdClient[] = [];

beforeAll(async () => {
  fixture = await NbdFixture.start(exportsAndFlags.map(([name, readOnly, answers]) => ({ name, sizeBytes: MiB, readOnly, answers })));
});

beforeEach(() => {
  fixture.logs.length = 0;
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await fixture.exportsClosed();
});

afterAll(() => fixture?.stop());

async function open(name: string): Promise<RawNbdClient> {
  const { client } = await RawNbdClient.open(fixture.port, name);
  clients.push(client);
  return client;
}

async function errorOf(client: RawNbdClient, request: Request): Promise<number> {
  client.sendRequest(request);
  return (await client.readSimpleReply()).error;
}

test.each(exportsAndFlags)('nbdinfo --json on %s shows the flags its device answers', async (name, _readOnly, _answers, seen) => {
  const result = await run('nbdinfo', ['--json', fixture.uri(name)]);
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout).exports[0]).toMatchObject({ ...seen, can_flush: true });
});

test('a FAST_ZERO the device cannot do fast fails with ENOTSUP and changes nothing; without the flag it zeroes', async () => {
  const client = await open('multi-fast');
  expect(await client.write(0, Buffer.alloc(8192, 0x5a))).toBe(0);
  expect(await errorOf(client, { type: CMD.WRITE_ZEROES, flags: CMD_FLAG.FAST_ZERO, offset: 0, length: 8192 })).toBe(ERR.ENOTSUP);
  expect((await client.readData(0, 8192)).every((b) => b === 0x5a)).toBe(true);
  expect(await errorOf(client, { type: CMD.WRITE_ZEROES, offset: 0, length: 8192 })).toBe(0);
  expect((await client.readData(0, 8192)).every((b) => b === 0)).toBe(true);
});

test('FAST_ZERO where it was not advertised is EINVAL, not ENOTSUP', async () => {
  const client = await open('plain');
  expect(await errorOf(client, { type: CMD.WRITE_ZEROES, flags: CMD_FLAG.FAST_ZERO, offset: 0, length: 4096 })).toBe(ERR.EINVAL);
});

test('TRIM, WRITE_ZEROES and FUA are refused (EINVAL) where the device does not offer them; data stays', async () => {
  const { client, transmissionFlags } = await RawNbdClient.open(fixture.port, 'bare');
  clients.push(client);
  // libnbd hides a FAST_ZERO sent without WRITE_ZEROES from nbdinfo; the raw flags show it was not sent.
  expect(transmissionFlags & (TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_FAST_ZERO)).toBe(0);
  expect(await client.write(0, Buffer.alloc(4096, 0x77))).toBe(0);
  expect(await errorOf(client, { type: CMD.TRIM, offset: 0, length: 4096 })).toBe(ERR.EINVAL);
  expect(await errorOf(client, { type: CMD.WRITE_ZEROES, offset: 0, length: 4096 })).toBe(ERR.EINVAL);
  expect(await client.write(0, Buffer.alloc(4096, 0x78), CMD_FLAG.FUA)).toBe(ERR.EINVAL);
  expect((await client.readData(0, 4096)).every((b) => b === 0x77)).toBe(true);
  expect(fixture.warnings().map((w) => w.msg)).toEqual([
    'NBD: TRIM is not supported by this export',
    'NBD: WRITE_ZEROES is not supported by this export',
    'NBD: flags 0x1 are not valid for WRITE',
  ]);
});

test('every write-type command on a read-only export is EPERM, with or without FUA', async () => {
  const client = await open('ro');
  expect(await client.write(0, Buffer.alloc(4096, 1), CMD_FLAG.FUA)).toBe(ERR.EPERM);
  expect(await errorOf(client, { type: CMD.TRIM, offset: 0, length: 4096 })).toBe(ERR.EPERM);
  expect(await errorOf(client, { type: CMD.WRITE_ZEROES, flags: CMD_FLAG.FAST_ZERO, offset: 0, length: 4096 })).toBe(ERR.EPERM);
});
