// The node's NBD client against a server it did not come from (nbdkit), checked with a third-party
// client (qemu-io): it reads and writes what they see, and a server that stops answering or dies
// fails every pending request with an error that says so.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NbdClient } from '../../fabric/nbd/client';
import * as P from '../../fabric/nbd/protocol';
import { freePort } from '../helpers/free-port';
import { cleanupAll, makeTempDir, run } from '../helpers/weftd';

const MiB = 1024 * 1024;
let pidFile: string;

/** Starts nbdkit (it daemonizes once listening) with the given plugin arguments; returns its URI. */
async function nbdkit(args: string[]): Promise<{ port: number; uri: string }> {
  const port = await freePort();
  pidFile = path.join(makeTempDir('weft-nbdkit-'), 'pid');
  const started = await run('nbdkit', ['-i', '127.0.0.1', '-p', String(port), '-P', pidFile, ...args]);
  if (started.code !== 0) throw new Error(`nbdkit failed: ${started.stderr}`);
  return { port, uri: `nbd://127.0.0.1:${port}/` };
}

function killNbdkit(): void {
  if (!fs.existsSync(pidFile)) return;
  try {
    process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
  } catch {
    // already gone
  }
}

afterEach(killNbdkit);
afterAll(cleanupAll);

it('reads and writes what a third-party client sees, with FUA, trim, zeroes and flush', async () => {
  const { port, uri } = await nbdkit(['memory', '16M']);
  expect((await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 0 1M', uri])).code).toBe(0);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '' });
  expect(client.sizeBytes).toBe(16 * MiB);
  expect(client.canFua).toBe(true);
  expect(await client.read(4096, 8192)).toEqual(Buffer.alloc(8192, 0x3c));
  await Promise.all([client.write(2 * MiB, Buffer.alloc(MiB, 0x7e), true), client.trim(0, 64 * 1024, false), client.writeZeroes(512 * 1024, 4096, false, true)]);
  await client.flush();
  client.close();
  const check = (command: string) => run('qemu-io', ['-f', 'raw', '-c', command, uri]);
  expect((await check('read -P 0x7e 2M 1M')).code).toBe(0);
  expect((await check('read -P 0 0 64k')).code).toBe(0);
  expect((await check('read -P 0 512k 4k')).code).toBe(0);
  expect((await check('read -P 0x3c 516k 4k')).code).toBe(0);
});

it('sends every write intact while the server reads slower than it is sent to (send slabs reused only once sent)', async () => {
  // 16 MiB of 4 KiB writes, each block stamped with its number, issued in waves of 1 MiB (several
  // send slabs each) without waiting for the slow server: the socket holds sends from slabs that
  // are full, and new requests must not be laid over them.
  const { port } = await nbdkit(['--filter=delay', 'memory', '16M', 'wdelay=1ms']);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '', timeoutMs: 60_000 });
  const blocks = (16 * MiB) / 4096;
  const stamped = (block: number) => {
    const data = Buffer.alloc(4096);
    for (let at = 0; at < 4096; at += 4) data.writeUInt32LE(block, at);
    return data;
  };
  const writes: Promise<void>[] = [];
  for (let wave = 0; wave < blocks / 256; wave++) {
    for (let i = 0; i < 256; i++) writes.push(client.write((wave * 256 + i) * 4096, stamped(wave * 256 + i), false));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(writes);
  const back = await client.read(0, 16 * MiB);
  const wrong: number[] = [];
  for (let block = 0; block < blocks; block++) if (!back.subarray(block * 4096, (block + 1) * 4096).equals(stamped(block))) wrong.push(block);
  expect(wrong).toEqual([]);
  client.close();
});

it('fails every pending request, and every later one, when the server does not answer in time', async () => {
  const { port } = await nbdkit(['--filter=delay', 'memory', '16M', 'wdelay=20']);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '', timeoutMs: 300 });
  const writes = [0, 1, 2].map((i) => client.write(i * 4096, Buffer.alloc(4096, 1), false));
  for (const write of writes) await expect(write).rejects.toThrow(/no reply within 300 ms/);
  await expect(client.read(0, 4096)).rejects.toThrow(/no reply within 300 ms/);
  expect(client.broken).toBeDefined();
});

it('fails every pending request when the server dies', async () => {
  const { port } = await nbdkit(['--filter=delay', 'memory', '16M', 'wdelay=20']);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '' });
  const writes = [0, 1].map((i) => client.write(i * 4096, Buffer.alloc(4096, 1), false));
  killNbdkit();
  for (const write of writes) await expect(write).rejects.toThrow(/nbd:\/\/127\.0\.0\.1:\d+\/: (connection closed|read ECONNRESET)/);
});

it('matches each reply to its request when a slow one stays in flight while thousands of others come and go', async () => {
  // Handles name a slot and a serial, and slots are taken again once answered: a read held up by
  // the server must still get its own data after its neighbours' slots have been reused many times.
  const { port, uri } = await nbdkit(['--filter=delay', 'memory', '16M', 'rdelay=1500ms']);
  expect((await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', uri])).code).toBe(0);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '', timeoutMs: 30_000 });
  const slowRead = client.read(0, 64 * 1024);
  for (let wave = 0; wave < 20; wave++) {
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.write(MiB + (wave * 50 + i) * 4096, Buffer.alloc(4096, (wave * 50 + i) % 251), false)));
  }
  expect(await slowRead).toEqual(Buffer.alloc(64 * 1024, 0x5a));
  client.close();
  for (const block of [0, 777, 999]) expect((await run('qemu-io', ['-f', 'raw', '-c', `read -P ${block % 251} ${MiB + block * 4096} 4k`, uri])).code).toBe(0);
});

/**
 * A server that does the handshake by the book (a 1 MiB export; it offers no NO_ZEROES, and ends a
 * connection whose client sets it anyway), then hands each request's header
 * to onRequest with the socket: for replies a real server would never send.
 */
async function scriptedServer(onRequest: (socket: net.Socket, header: Buffer) => void): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined); // the client resets a connection it gives up on
    let buffered = Buffer.alloc(0);
    let phase: 'flags' | 'option' | 'transmission' = 'flags';
    const hello = Buffer.alloc(18);
    hello.writeUInt32BE(P.NBDMAGIC_HI, 0);
    hello.writeUInt32BE(P.NBDMAGIC_LO, 4);
    hello.writeUInt32BE(P.IHAVEOPT_HI, 8);
    hello.writeUInt32BE(P.IHAVEOPT_LO, 12);
    hello.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE, 16);
    socket.write(hello);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (phase === 'flags' && buffered.length >= 4) {
          // As the spec has it: a client flag the server did not offer (here NO_ZEROES) ends the connection.
          if ((buffered.readUInt32BE(0) & ~P.FLAG_C_FIXED_NEWSTYLE) !== 0) return void socket.destroy();
          buffered = buffered.subarray(4);
          phase = 'option';
        } else if (phase === 'option' && buffered.length >= 16 && buffered.length >= 16 + buffered.readUInt32BE(12)) {
          const option = buffered.readUInt32BE(8);
          buffered = buffered.subarray(16 + buffered.readUInt32BE(12));
          const info = Buffer.alloc(12);
          info.writeUInt16BE(P.INFO_EXPORT, 0);
          info.writeUInt32BE(MiB, 6); // size: 1 MiB
          info.writeUInt16BE(P.FLAG_HAS_FLAGS, 10);
          socket.write(Buffer.concat([optionReply(option, P.REP_INFO, info), optionReply(option, P.REP_ACK, Buffer.alloc(0))]));
          phase = 'transmission';
        } else if (phase === 'transmission' && buffered.length >= P.REQUEST_HEADER_BYTES) {
          const header = buffered.subarray(0, P.REQUEST_HEADER_BYTES);
          const payload = header.readUInt16BE(6) === P.CMD_WRITE ? header.readUInt32BE(24) : 0;
          if (buffered.length < P.REQUEST_HEADER_BYTES + payload) return;
          buffered = buffered.subarray(P.REQUEST_HEADER_BYTES + payload);
          onRequest(socket, Buffer.from(header));
        } else return;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { port: (server.address() as net.AddressInfo).port, server };
}

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterAll(() => {
  for (const socket of sockets) socket.destroy();
  for (const server of servers) server.close();
});

function optionReply(option: number, type: number, data: Buffer): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(P.OPTION_REPLY_MAGIC_HI, 0);
  header.writeUInt32BE(P.OPTION_REPLY_MAGIC_LO, 4);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(type, 12);
  header.writeUInt32BE(data.length, 16);
  return Buffer.concat([header, data]);
}

/** A simple reply (no error) echoing the 8-byte handle at 8..16 of a request header. */
function simpleReply(handle: Buffer): Buffer {
  const reply = Buffer.alloc(P.SIMPLE_REPLY_BYTES);
  reply.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
  handle.copy(reply, 8);
  return reply;
}

it('refuses a second reply to a request whose slot has been taken again, and fails the connection', async () => {
  // Handles are reused slots: an old reply (a server's bug, a replay) must not answer the request
  // that holds the slot now. The first write is answered; the second takes its slot; the server
  // then sends the first write's reply again.
  const handles: Buffer[] = [];
  const { port } = await scriptedServer((socket, header) => {
    handles.push(header.subarray(8, 16));
    socket.write(simpleReply(handles[0])); // right the first time, the first write's again the second
  });
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'x' });
  await client.write(0, Buffer.alloc(4096, 1), false);
  const second = client.write(4096, Buffer.alloc(4096, 2), false);
  await expect(second).rejects.toThrow(/reply to unknown handle/);
  expect(handles[1].readUInt32BE(0)).toBe(handles[0].readUInt32BE(0)); // the same slot
  expect(handles[1].equals(handles[0])).toBe(false); // another serial
  await expect(client.read(0, 4096)).rejects.toThrow(/reply to unknown handle/);
});

it('refuses a reply that names a slot no request holds', async () => {
  const { port } = await scriptedServer((socket, header) => {
    const wrong = Buffer.from(header.subarray(8, 16));
    wrong.writeUInt32BE(wrong.readUInt32BE(0) + 7, 0);
    socket.write(simpleReply(wrong));
  });
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'x' });
  await expect(client.flush()).rejects.toThrow(/reply to unknown handle/);
  expect(client.broken).toBeDefined();
});
