// The NBD FUA flag reaches the device: a WRITE, WRITE_ZEROES or TRIM sent with FUA is handed to
// the device with fua set (the device then makes it durable before the reply; for weft's volumes
// test/volume/durability-order.test.ts checks that), and one sent without it is not.

import type { Pieces } from '../../fabric/pieces';
import type { WriteZeroesOptions } from '../../fabric/volume/block-device';
import { PassThroughDevice } from '../../fabric/volume/pass-through-device';
import { CMD, CMD_FLAG, RawNbdClient } from '../helpers/nbd-raw-client';
import { run } from '../helpers/weftd';
import { NbdFixture } from './fixture';

const KiB = 1024;

type Command = 'write' | 'trim' | 'writeZeroes';

/** What the device was asked, in order: each write-like command with its fua flag. */
const seen: [Command, boolean][] = [];

/** A layer over the export's device: write, trim and writeZeroes note their fua flag on the way down. */
class NoteFua extends PassThroughDevice {
  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    seen.push(['write', fua]);
    return super.write(offsetBytes, data, fua);
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    seen.push(['trim', fua]);
    return super.trim(offsetBytes, lengthBytes, fua);
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    seen.push(['writeZeroes', options.fua]);
    return super.writeZeroes(offsetBytes, lengthBytes, options);
  }
}

let fixture: NbdFixture;

beforeAll(async () => {
  fixture = await NbdFixture.start([{ name: 'disk', sizeBytes: 1024 * KiB, layer: (device) => new NoteFua(device) }]);
});

afterAll(() => fixture.stop());

beforeEach(() => {
  seen.length = 0;
});

test('qemu-io: write -f sends FUA to the device, a plain write does not', async () => {
  // qemu-io's default cache mode is writethrough, which sets FUA on every write.
  const result = await run('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', 'write -f -P 0x5a 0 64k', '-c', 'write -P 0x5b 64k 64k', fixture.uri('disk')]);
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  expect(seen).toEqual([
    ['write', true],
    ['write', false],
  ]);
});

test('WRITE, WRITE_ZEROES and TRIM with the FUA flag reach the device with fua set', async () => {
  const { client } = await RawNbdClient.open(fixture.port, 'disk');
  try {
    expect(await client.write(0, Buffer.alloc(4 * KiB, 1), CMD_FLAG.FUA)).toBe(0);
    for (const type of [CMD.WRITE_ZEROES, CMD.TRIM]) {
      client.sendRequest({ type, flags: CMD_FLAG.FUA, offset: 0, length: 4 * KiB });
      expect((await client.readSimpleReply()).error).toBe(0);
    }
  } finally {
    client.destroy();
  }
  expect(seen).toEqual([
    ['write', true],
    ['writeZeroes', true],
    ['trim', true],
  ]);
  await fixture.exportsClosed();
});
