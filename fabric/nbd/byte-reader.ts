// Sequential reads of exact byte counts from a socket's chunks, for the handshake phase, where
// one await per message is fine; it holds a bounded amount. The transmission phase parses without it.

import { appendPiece } from '../pieces';

export class ConnectionEnded extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ConnectionEnded';
  }
}

/** Where the bytes come from (a socket): it is paused while the reader holds its limit. */
export interface ByteSource {
  pause(): void;
  resume(): void;
}

export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wanted = 0;
  private waiter?: { resolve(data: Buffer): void; reject(err: Error): void };
  private ended?: Error;
  private paused = false;

  /** `limitBytes` must be at least the longest single read, or that read never completes. */
  constructor(
    private readonly source: ByteSource,
    private readonly limitBytes: number,
  ) {}

  /** A chunk from the source; the source is paused once the unread bytes reach the limit. */
  push(chunk: Buffer): void {
    appendPiece(this.chunks, chunk);
    this.buffered += chunk.length;
    this.settle();
    if (!this.paused && this.buffered >= this.limitBytes) {
      this.paused = true;
      this.source.pause();
    }
  }

  /** No more bytes will come; a pending or later read that cannot be met rejects. */
  end(reason: string): void {
    this.ended ??= new ConnectionEnded(reason);
    this.settle();
  }

  /** Resolves with exactly `bytes` bytes. Only one read may be pending at a time. */
  read(bytes: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.wanted = bytes;
      this.settle();
    });
  }

  /**
   * Takes whatever is buffered and has not been read (bytes that belong to the next phase). The
   * source is left as it is, paused or not: the next phase decides when to read.
   */
  takeRest(): Buffer[] {
    const rest = this.chunks;
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  private settle(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    if (this.buffered >= this.wanted) {
      this.waiter = undefined;
      waiter.resolve(this.take(this.wanted));
    } else if (this.ended) {
      this.waiter = undefined;
      waiter.reject(this.ended);
    }
  }

  private take(bytes: number): Buffer {
    const out = Buffer.allocUnsafe(bytes);
    let filled = 0;
    while (filled < bytes) {
      const head = this.chunks[0];
      const n = Math.min(head.length, bytes - filled);
      head.copy(out, filled, 0, n);
      filled += n;
      if (n === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
    }
    this.buffered -= bytes;
    if (this.paused && this.buffered < this.limitBytes) {
      this.paused = false;
      this.source.resume();
    }
    return out;
  }
}
