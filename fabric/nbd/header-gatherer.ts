// Fixed-size headers read from a stream of socket chunks (NBD requests on the server, replies on
// the client): in place when one chunk holds the whole header, else gathered in one reused buffer.

export class HeaderGatherer {
  private readonly gathered: Buffer;
  private filled = 0;

  /** parse(buf, at) gets each whole header, at buf[at..at+bytes). */
  constructor(
    private readonly bytes: number,
    private readonly parse: (buf: Buffer, at: number) => void,
  ) {
    this.gathered = Buffer.allocUnsafe(bytes);
  }

  /** True when part of a header has arrived but not all of it. */
  get partial(): boolean {
    return this.filled > 0;
  }

  /** Consumes header bytes of chunk from at, parsing the header once whole; returns the position after them. */
  feed(chunk: Buffer, at: number): number {
    if (this.filled === 0 && chunk.length - at >= this.bytes) {
      this.parse(chunk, at);
      return at + this.bytes;
    }
    const n = Math.min(this.bytes - this.filled, chunk.length - at);
    chunk.copy(this.gathered, this.filled, at, at + n);
    this.filled += n;
    if (this.filled === this.bytes) {
      this.filled = 0;
      this.parse(this.gathered, 0);
    }
    return at + n;
  }
}
