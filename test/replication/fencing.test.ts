// Epoch fencing in a replica, against a real weftd: replication connections name their epoch in the
// export name (VOL~epoch=N); a newer one raises the volume's epoch (durably), an older one is
// refused, and a connection whose epoch has been passed can no longer write. NBD_OPT_INFO raises nothing. A raise waits
// for the read lease of the last change taken. The cases run in order, on one volume, as its epoch goes up.

import { ExportRefusedError, NbdClient } from '../../fabric/nbd/client';
import { IoError } from '../../fabric/errors';
import { READ_LEASE_MS } from '../../fabric/volume/epoch-fence';
import { infoRequest, INFO, OPT, RawNbdClient, REP } from '../helpers/nbd-raw-client';
import { ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, run } from '../helpers/weftd';

const MiB = 1024 * 1024;
let replica: ReplicaNode;

beforeAll(async () => {
  replica = await ReplicaNode.start('r1', 'vol', 16 * MiB);
});

afterAll(async () => {
  replica.closeClients();
  await cleanupAll();
});

it('starts at epoch 0, and a connection at a newer epoch raises it', async () => {
  expect((await replica.show()).epoch).toBe(0);
  const client = await replica.connect(1);
  expect((await replica.show()).epoch).toBe(1);
  client.close();
});

it('refuses every write of a connection once a newer epoch has reached the volume; its data does not land', async () => {
  const old = await replica.connect(1);
  await old.write(0, Buffer.alloc(64 * 1024, 0xa1), true);

  const newer = await replica.connect(2);
  expect((await replica.show()).epoch).toBe(2);
  const refused = old.write(0, Buffer.alloc(64 * 1024, 0xb2), true);
  await expect(refused).rejects.toThrow(IoError);
  await expect(refused).rejects.toMatchObject({ errno: 'EPERM' });
  await expect(old.trim(0, 4096, false)).rejects.toMatchObject({ errno: 'EPERM' });
  await expect(old.writeZeroes(0, 4096, false, false)).rejects.toMatchObject({ errno: 'EPERM' });
  await expect(old.flush()).rejects.toMatchObject({ errno: 'EPERM' });
  // Reads are not fenced; and what the old primary sent is not there.
  expect(await old.read(0, 64 * 1024)).toEqual(Buffer.alloc(64 * 1024, 0xa1));
  expect(await newer.read(0, 64 * 1024)).toEqual(Buffer.alloc(64 * 1024, 0xa1));

  await newer.write(0, Buffer.alloc(4096, 0xc3), true);
  expect(await newer.read(0, 4096)).toEqual(Buffer.alloc(4096, 0xc3));
  old.close();
  newer.close();
});

it('refuses to open at an older epoch, naming both epochs', async () => {
  const refused = replica.connect(1);
  await expect(refused).rejects.toThrow(ExportRefusedError);
  await expect(refused).rejects.toThrow(/volume vol is at epoch 2; a replication connection at the older epoch 1 is refused/);
  // NBD_REP_ERR_POLICY, which libnbd reports as "not supported".
  const info = await run('nbdinfo', [replica.node.nbdUri('vol~epoch=1')]);
  expect(info.code).not.toBe(0);
  expect(info.stderr).toMatch(/Operation not supported/);
  expect((await replica.show()).epoch).toBe(2);
});

it('answers NBD_OPT_INFO about a newer epoch without raising the epoch (a question changes nothing)', async () => {
  const client = await RawNbdClient.connect(replica.node.nbdPort);
  try {
    await client.readGreeting();
    client.sendClientFlags(3);
    const replies = await client.optionExchange(OPT.INFO, infoRequest('vol~epoch=7', []));
    expect(replies[replies.length - 1].type).toBe(REP.ACK);
    expect(replies.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === INFO.EXPORT)?.data.readBigUInt64BE(2)).toBe(BigInt(16 * MiB));
  } finally {
    client.socket.destroy();
  }
  expect((await replica.show()).epoch).toBe(2);
});

it.each(['vol~epoch=', 'vol~epoch=x', 'vol~epoch=01', 'vol~epoch=-1', 'vol~epoch=1.5', '~epoch=1', 'vol~epoch=99999999999999999999'])(
  'refuses the malformed replication export name %s',
  async (name) => {
    const open = NbdClient.connect({ host: '127.0.0.1', port: replica.node.nbdPort, exportName: name });
    await expect(open).rejects.toThrow(/malformed replication export name/);
    // NBD_REP_ERR_INVALID, as a third-party client sees it.
    const info = await run('nbdinfo', [replica.node.nbdUri(name)]);
    expect(info.stderr).toMatch(/Invalid argument/);
    expect((await replica.show()).epoch).toBe(2);
  },
);

it('keeps the epoch through kill -9 and a restart', async () => {
  await replica.node.kill9();
  await replica.node.start();
  expect((await replica.show()).epoch).toBe(2);
  await expect(replica.connect(1)).rejects.toThrow(/at epoch 2/);
  const client = await replica.connect(2);
  expect(await client.read(0, 4096)).toEqual(Buffer.alloc(4096, 0xc3));
  client.close();
});

it('holds off a raise until the read lease of the last change it took has ended (no newer primary while the old one may read)', async () => {
  const old = await replica.connect(2);
  const sentAt = performance.now();
  await old.write(0, Buffer.alloc(4096, 0xd4), true);
  // A primary at epoch 3 opens at once: the raise commits no earlier than READ_LEASE_MS after the
  // copy took the write, so no earlier than that after it was sent.
  const newer = await replica.connect(3);
  expect(performance.now() - sentAt).toBeGreaterThanOrEqual(READ_LEASE_MS);
  expect((await replica.show()).epoch).toBe(3);
  await expect(old.flush()).rejects.toMatchObject({ errno: 'EPERM' });
  old.close();
  newer.close();
});
