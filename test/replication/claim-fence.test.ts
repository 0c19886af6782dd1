// The primary's fence of forwarded changes by the volume's attach claim (claim-fence.ts), where its
// view of the store lags: a claim that just moved to the forwarder's node is read again before a
// change is refused, and a store that does not answer refuses nothing for good (ESHUTDOWN, which the
// forwarder retries). The device below is a real file.

import path from 'node:path';
import { ClaimFencedDevice, type ClaimView } from '../../fabric/replication/claim-fence';
import { ForwarderFence } from '../../fabric/replication/forwarder-fence';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { FileBlockDevice } from '../helpers/file-block-device';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const BLOCK = 4096;
let file: FileBlockDevice;

beforeAll(async () => {
  file = await FileBlockDevice.create(path.join(makeTempDir('weft-claim-fence-'), 'vol'), 16 * BLOCK);
});

afterAll(async () => {
  await file?.close();
  await cleanupAll();
});

/** A view of the claim: `seen` as last read, `now` as the store has it (an Error: it does not answer). */
function view(seen: string | undefined, now: string | undefined | Error): ClaimView & { reads: number } {
  const claims = {
    reads: 0,
    holder: () => seen,
    holderNow: async () => {
      claims.reads++;
      if (now instanceof Error) throw now;
      return now;
    },
  };
  return claims;
}

test('no claim, or the forwarder\'s own: changes pass without asking the store', async () => {
  for (const seen of [undefined, 'b']) {
    const claims = view(seen, new Error('not asked'));
    const device = new ClaimFencedDevice(file, 'vol', 'b', claims);
    await device.write(0, Buffer.alloc(BLOCK, 0x11), true);
    await device.writeZeroes(BLOCK, BLOCK, { fua: true, noHole: false, fastZero: false });
    await device.trim(2 * BLOCK, BLOCK, false);
    expect(claims.reads).toBe(0);
  }
});

test('a claim seen on another node, moved since to the forwarder\'s: read again, and the change passes', async () => {
  const claims = view('c', 'b');
  const device = new ClaimFencedDevice(file, 'vol', 'b', claims);
  await device.write(0, Buffer.alloc(BLOCK, 0x22), true);
  expect((await file.read(0, BLOCK)).equals(Buffer.alloc(BLOCK, 0x22))).toBe(true);
  expect(claims.reads).toBe(1);
});

test('a claim on another node: refused with EIO, and nothing changes; reads and flushes go on', async () => {
  const device = new ClaimFencedDevice(file, 'vol', 'a', view('b', 'b'));
  await expect(device.write(0, Buffer.alloc(BLOCK, 0x33), true)).rejects.toMatchObject({ errno: 'EIO', message: 'volume vol is attached on node b: changes through node a are refused' });
  await expect(device.writeZeroes(0, BLOCK, { fua: true, noHole: true, fastZero: false })).rejects.toMatchObject({ errno: 'EIO' });
  await expect(device.trim(0, BLOCK, true)).rejects.toMatchObject({ errno: 'EIO' });
  expect((await device.read(0, BLOCK)).equals(Buffer.alloc(BLOCK, 0x22))).toBe(true);
  await device.flush();
});

test('a store that does not answer: ESHUTDOWN to a forwarder (it tries again), EIO to the node\'s own clients, and nothing changes', async () => {
  const forwarded = new ClaimFencedDevice(file, 'vol', 'a', view('b', new Error('etcd is down')));
  await expect(forwarded.write(0, Buffer.alloc(BLOCK, 0x44), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN', message: expect.stringContaining('etcd is down') });
  const local = new ClaimFencedDevice(file, 'vol', 'a', view('b', new Error('etcd is down')), false);
  await expect(local.write(0, Buffer.alloc(BLOCK, 0x44), true)).rejects.toMatchObject({ errno: 'EIO', message: expect.stringContaining('etcd is down') });
  expect((await file.read(0, BLOCK)).equals(Buffer.alloc(BLOCK, 0x22))).toBe(true);
});

test("a forwarded change held by a read of the claim does not begin once a newer connection of its forwarder has opened: it cannot land after the change sent again", async () => {
  const fence = new ForwarderFence();
  let answer!: (holder: string) => void;
  const slowStore: ClaimView = { holder: () => 'c', holderNow: () => new Promise((resolve) => (answer = resolve)) };
  const claimFenced = (claims: ClaimView) => (device: BlockDevice) => new ClaimFencedDevice(device, 'vol', 'b', claims);
  const older = fence.admit('vol', { forwarder: 'ab', generation: 1 }, file, 'b', claimFenced(slowStore));
  const held = older!.device.write(0, Buffer.alloc(BLOCK, 0x55), true);
  // The forwarder gave up on it, sent it again on a newer connection, and the client wrote the block again since.
  const newer = fence.admit('vol', { forwarder: 'ab', generation: 2 }, file, 'b', claimFenced(view('b', 'b')));
  await newer!.device.write(0, Buffer.alloc(BLOCK, 0x55), true);
  await newer!.device.write(0, Buffer.alloc(BLOCK, 0x66), true);
  answer('b');
  await expect(held).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  expect((await file.read(0, BLOCK)).equals(Buffer.alloc(BLOCK, 0x66))).toBe(true);
});
