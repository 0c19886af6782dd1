// The request parser on a byte stream cut into chunks anywhere: a WRITE's payload comes out as
// views of the chunks it arrived in, whose concatenation is exactly the payload; a payload that
// arrives a few bytes at a time is held in few pieces, and so is handshake input (ByteReader).

import { randomBytes } from 'crypto';
import { ByteReader } from '../../fabric/nbd/byte-reader';
import { NbdRequest, RequestParser } from '../../fabric/nbd/request-parser';
import { CMD, encodeRequest } from '../helpers/nbd-raw-client';

/** Feeds the stream to a parser in chunks cut at the given offsets; returns what it parsed. */
function parse(stream: Buffer, cuts: number[], maxPayloadBytes = 1 << 20): NbdRequest[] {
  const requests: NbdRequest[] = [];
  const parser = new RequestParser(
    {
      payloadStarts: (req) => expect(req.payload).toEqual([]), // before any of its bytes
      request: (req) => requests.push(req),
      badMagic: (magic) => {
        throw new Error(`bad magic ${magic}`);
      },
    },
    maxPayloadBytes,
  );
  const bounds = [0, ...cuts, stream.length];
  for (let i = 1; i < bounds.length; i++) {
    // Every chunk in its own memory, as the socket delivers them.
    const chunk = Buffer.from(stream.subarray(bounds[i - 1], bounds[i]));
    for (let at = 0; at < chunk.length; ) at = parser.feed(chunk, at);
  }
  return requests;
}

/** The bytes of memory the buffers behind pieces take, each counted once. */
function memoryHeld(pieces: Buffer[]): number {
  return [...new Set(pieces.map((piece) => piece.buffer))].reduce((sum, buffer) => sum + buffer.byteLength, 0);
}

describe('RequestParser', () => {
  const first = randomBytes(3 * 4096 + 100);
  const second = randomBytes(4096);
  const stream = Buffer.concat([
    encodeRequest({ type: CMD.WRITE, offset: 8192, length: first.length, payload: first }),
    encodeRequest({ type: CMD.FLUSH }),
    encodeRequest({ type: CMD.WRITE, offset: 0, length: second.length, payload: second }),
  ]);

  test.each([
    ['one chunk', [] as number[]],
    ['a header cut in two', [10]],
    ['a payload in many chunks, one cut inside a 4 KiB block', [28, 4096 + 28 + 17, 8000, 12_000]],
    ['chunks of 1 byte around the boundaries of requests', [27, 28, 29, 28 + first.length, 28 + first.length + 1, 56 + first.length + 3]],
    ['chunks of 5000 bytes', [5000, 10_000, 15_000]],
  ])('%s', (_name, cuts) => {
    const requests = parse(stream, [...new Set(cuts)].sort((a, b) => a - b));
    expect(requests.map((r) => [r.type, r.offsetBytes, r.lengthBytes])).toEqual([
      [CMD.WRITE, 8192, first.length],
      [CMD.FLUSH, 0, 0],
      [CMD.WRITE, 0, second.length],
    ]);
    expect(Buffer.concat(requests[0].payload!).equals(first)).toBe(true);
    expect(requests[1].payload).toBeUndefined();
    expect(Buffer.concat(requests[2].payload!).equals(second)).toBe(true);
    expect(requests.every((r) => (r.payload ?? []).every((piece) => piece.length > 0))).toBe(true);
  });

  test('a payload longer than the server accepts is skipped, and the next request is parsed', () => {
    const requests = parse(stream, [100, 5000], 4096);
    expect(requests[0].payload).toBeUndefined();
    expect(requests[1].type).toBe(CMD.FLUSH);
    expect(Buffer.concat(requests[2].payload!).equals(second)).toBe(true);
  });

  // Node gives every socket read a buffer of its own, a few hundred bytes beyond its data: held one
  // per byte, a client sending a byte per segment took hundreds of times the memory weftd counts.
  test('a payload that arrives a byte at a time, or in short pieces between long ones, is held in few pieces', () => {
    const payload = randomBytes(64 * 1024);
    const write = encodeRequest({ type: CMD.WRITE, offset: 0, length: payload.length, payload });
    const byteAtATime = Array.from({ length: payload.length - 1 }, (_, i) => 28 + i + 1);
    const [dripped] = parse(write, [28, ...byteAtATime]);
    expect(Buffer.concat(dripped.payload!).equals(payload)).toBe(true);
    expect(dripped.payload!.length).toBeLessThanOrEqual(64 * 2);
    expect(memoryHeld(dripped.payload!)).toBeLessThanOrEqual(2 * payload.length + 2048); // not Node's 8 KiB pool slabs, one per piece

    const mixed = [28];
    for (let at = 28; at < write.length - 5000; ) mixed.push((at += 3), (at += 5000)); // 3 bytes, then 5000
    const [alternating] = parse(write, mixed);
    expect(Buffer.concat(alternating.payload!).equals(payload)).toBe(true);
    expect(alternating.payload!.length).toBeLessThanOrEqual(2 * mixed.length);
  });

  // A payload kept as a view of its socket read holds the whole read: a client padding each short
  // WRITE with zero-length READs (answered at once) held 64 KiB per WRITE while a few bytes counted.
  test('a short payload is copied out of a long read; a 4 KiB one in a 64 KiB read stays a view of it', () => {
    const padding = Array.from({ length: 2000 }, () => encodeRequest({ type: CMD.READ, offset: 0, length: 0 }));
    const small = randomBytes(100);
    const [write] = parse(Buffer.concat([encodeRequest({ type: CMD.WRITE, offset: 0, length: small.length, payload: small }), ...padding]), []);
    expect(Buffer.concat(write.payload!).equals(small)).toBe(true);
    expect(memoryHeld(write.payload!)).toBeLessThanOrEqual(2048);

    const block = randomBytes(4096);
    const writes = Array.from({ length: 15 }, (_, i) => encodeRequest({ type: CMD.WRITE, offset: i * 4096, length: 4096, payload: block }));
    const [first] = parse(Buffer.concat(writes), []);
    expect(Buffer.concat(first.payload!).equals(block)).toBe(true);
    expect(memoryHeld(first.payload!)).toBe(15 * (28 + 4096)); // no copy on the path of every 4 KiB write
  });
});

describe('ByteReader', () => {
  test('handshake input that arrives a byte at a time is held in few pieces, and read back whole', async () => {
    const reader = new ByteReader({ pause: () => undefined, resume: () => undefined }, 1 << 20);
    const input = randomBytes(16 * 1024);
    for (let i = 0; i < input.length; i++) reader.push(Buffer.from(input.subarray(i, i + 1)));
    const held = reader.takeRest();
    expect(Buffer.concat(held).equals(input)).toBe(true);
    expect(held.length).toBeLessThanOrEqual(16 * 2);
    expect(memoryHeld(held)).toBeLessThanOrEqual(2 * input.length + 2048);
  });

  test('reads across pieces joined and not come out exact', async () => {
    const reader = new ByteReader({ pause: () => undefined, resume: () => undefined }, 1 << 20);
    const input = randomBytes(10_000);
    for (const [from, to] of [[0, 1], [1, 2], [2, 3000], [3000, 3001], [3001, 3002], [3002, 10_000]]) reader.push(Buffer.from(input.subarray(from, to)));
    expect((await reader.read(2)).equals(input.subarray(0, 2))).toBe(true);
    expect((await reader.read(7000)).equals(input.subarray(2, 7002))).toBe(true);
    expect(Buffer.concat(reader.takeRest()).equals(input.subarray(7002))).toBe(true);
  });
});
