// The request parser on a byte stream cut into chunks anywhere: a WRITE's payload comes out as
// views of the chunks it arrived in, whose concatenation is exactly the payload.

import { randomBytes } from 'crypto';
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
});
