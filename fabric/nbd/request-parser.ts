// Splits the transmission byte stream into requests: headers are read in place (or in one reused
// buffer); a WRITE's payload is kept as views of the chunks it arrived in, copied only where short
// pieces follow one another (appendPiece).

import { appendPiece } from '../pieces';
import { HeaderGatherer } from './header-gatherer';
import * as P from './protocol';

export class NbdRequest {
  /**
   * A WRITE's data as views of the socket's chunks, in order (Node gives every read a new chunk, so
   * nothing overwrites them); undefined when the payload was longer than the server accepts.
   */
  payload?: Buffer[];
  /** Memory the request holds until its reply has left the socket (a WRITE's from its first payload byte on, others' from when accepted). */
  heldBytes = 0;

  constructor(
    readonly flags: number,
    readonly type: number,
    /** The client's 64-bit handle, echoed in the reply, as two 32-bit halves. */
    readonly handleHi: number,
    readonly handleLo: number,
    /** Exact below 2^53; larger offsets lose precision but stay past the end of any export. */
    readonly offsetBytes: number,
    readonly lengthBytes: number,
  ) {}
}

export interface RequestSink {
  /** A WRITE whose payload is held is on its way: its bytes count from now. */
  payloadStarts(req: NbdRequest): void;
  request(req: NbdRequest): void;
  badMagic(magic: number): void;
}

export class RequestParser {
  private readonly header = new HeaderGatherer(P.REQUEST_HEADER_BYTES, (buf, at) => this.parseHeader(buf, at));
  /** The WRITE whose payload is being received, and how many payload bytes are still to come. */
  private pending?: NbdRequest;
  private payloadLeft = 0;

  constructor(
    private readonly sink: RequestSink,
    private readonly maxPayloadBytes: number,
  ) {}

  /**
   * Consumes bytes of `chunk` from `at` until one request (or a bad magic) has been handed to the
   * sink or the chunk is used up; returns the position after the consumed bytes.
   */
  feed(chunk: Buffer, at: number): number {
    return this.pending ? this.feedPayload(chunk, at) : this.header.feed(chunk, at);
  }

  /** True when part of a request has arrived but not all of it. */
  midRequest(): boolean {
    return this.pending !== undefined || this.header.partial;
  }

  /** True while a WRITE's payload is being received (its header was read whole). */
  inPayload(): boolean {
    return this.pending !== undefined;
  }

  private parseHeader(buf: Buffer, at: number): void {
    const magic = buf.readUInt32BE(at);
    if (magic !== P.REQUEST_MAGIC) {
      this.sink.badMagic(magic);
      return;
    }
    const req = new NbdRequest(
      buf.readUInt16BE(at + 4),
      buf.readUInt16BE(at + 6),
      buf.readUInt32BE(at + 8),
      buf.readUInt32BE(at + 12),
      buf.readUInt32BE(at + 16) * 0x100000000 + buf.readUInt32BE(at + 20),
      buf.readUInt32BE(at + 24),
    );
    if (req.type !== P.CMD_WRITE || req.lengthBytes === 0) {
      this.sink.request(req);
      return;
    }
    if (req.lengthBytes <= this.maxPayloadBytes) {
      req.payload = [];
      this.sink.payloadStarts(req);
    }
    this.pending = req;
    this.payloadLeft = req.lengthBytes;
  }

  private feedPayload(chunk: Buffer, at: number): number {
    const req = this.pending as NbdRequest;
    const n = Math.min(this.payloadLeft, chunk.length - at);
    if (req.payload) appendPiece(req.payload, chunk.subarray(at, at + n));
    this.payloadLeft -= n;
    if (this.payloadLeft === 0) {
      this.pending = undefined;
      this.sink.request(req);
    }
    return at + n;
  }
}
