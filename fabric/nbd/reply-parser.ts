// The client side of the transmission phase: splits the server's byte stream into simple replies,
// synchronously as chunks arrive (no promise per reply); a READ's data is gathered into a buffer of
// its own.

import { HeaderGatherer } from './header-gatherer';
import * as P from './protocol';

export interface ReplySink {
  /**
   * A reply's header has arrived: the bytes of data that follow it (a successful READ's length,
   * else 0). Throws if the handle (all 64 bits, exact below 2^53) is not one of a request in flight.
   */
  header(handle: number, error: number): number;
  /** The whole reply: data is the READ's, when it carries any. */
  reply(handle: number, error: number, data: Buffer | undefined): void;
}

export class ReplyParser {
  private readonly header = new HeaderGatherer(P.SIMPLE_REPLY_BYTES, (buf, at) => this.parseHeader(buf, at));
  /** The reply whose data is being received. */
  private handle = 0;
  private data: Buffer | undefined;
  private dataFilled = 0;

  constructor(private readonly sink: ReplySink) {}

  /** Consumes a chunk; throws on a reply that breaks the protocol (the connection is then unusable). */
  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) at = this.data ? this.feedData(chunk, at) : this.header.feed(chunk, at);
  }

  private parseHeader(buf: Buffer, at: number): void {
    if (buf.readUInt32BE(at) !== P.SIMPLE_REPLY_MAGIC) throw new Error('reply without the simple reply magic');
    const error = buf.readUInt32BE(at + 4);
    const handle = buf.readUInt32BE(at + 8) * 2 ** 32 + buf.readUInt32BE(at + 12);
    const dataBytes = this.sink.header(handle, error);
    if (dataBytes === 0) {
      this.sink.reply(handle, error, undefined);
      return;
    }
    this.handle = handle;
    this.data = Buffer.allocUnsafe(dataBytes);
    this.dataFilled = 0;
  }

  private feedData(chunk: Buffer, at: number): number {
    const data = this.data as Buffer;
    const n = Math.min(data.length - this.dataFilled, chunk.length - at);
    chunk.copy(data, this.dataFilled, at, at + n);
    this.dataFilled += n;
    if (this.dataFilled === data.length) {
      this.data = undefined;
      this.sink.reply(this.handle, 0, data);
    }
    return at + n;
  }
}
