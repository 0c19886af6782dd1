// Encodes transmission-phase replies onto the socket, corked until the next tick so replies that
// complete together leave in one writev; READ data follows its header as its own buffer, uncopied.
// The simple replies of a tick without data (every WRITE's, FLUSH's...) are laid side by side in one
// buffer, one socket write for all. Each reply is reported once it has left the socket's buffer (or
// been dropped with the client).

import type net from 'node:net';
import type { NbdRequest } from './request-parser';
import { returnBuffer } from '../buffers';
import * as P from './protocol';
import { writeU64 } from './option-data';

/** Simple replies gathered in one buffer before it is handed to the socket (and a new one begun). */
const BATCH_REPLIES = 64;

export class ReplyWriter {
  private corked = false;
  /** The simple replies of this tick not yet handed to the socket, and their requests. */
  private batch: Buffer | undefined;
  private batchRequests: NbdRequest[] = [];
  private readonly release = (): void => {
    this.sendBatch();
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly written: (req: NbdRequest) => void,
  ) {}

  /** A simple reply: the error value (0 for success) and, for a successful READ, the data. */
  simple(req: NbdRequest, error: number, data?: Buffer): void {
    if (data) {
      const header = Buffer.allocUnsafe(P.SIMPLE_REPLY_BYTES);
      writeSimple(header, 0, error, req);
      this.send(req, header, data);
      return;
    }
    if (!this.open(req)) return;
    this.batch ??= Buffer.allocUnsafe(BATCH_REPLIES * P.SIMPLE_REPLY_BYTES);
    writeSimple(this.batch, this.batchRequests.length * P.SIMPLE_REPLY_BYTES, error, req);
    this.batchRequests.push(req);
    if (this.batchRequests.length === BATCH_REPLIES) this.sendBatch();
  }

  /** A whole READ as one final NBD_REPLY_TYPE_OFFSET_DATA chunk. */
  offsetData(req: NbdRequest, data: Buffer): void {
    const header = structuredHeader(req, P.REPLY_TYPE_OFFSET_DATA, 8 + data.length, 8);
    writeU64(header, P.STRUCTURED_HEADER_BYTES, req.offsetBytes);
    this.send(req, header, data);
  }

  /** A final NBD_REPLY_TYPE_NONE chunk: a READ of length 0 (no content chunk may describe zero bytes). */
  none(req: NbdRequest): void {
    this.send(req, structuredHeader(req, P.REPLY_TYPE_NONE, 0, 0));
  }

  /** A final NBD_REPLY_TYPE_ERROR chunk carrying a message for the user. */
  error(req: NbdRequest, error: number, message: string): void {
    const text = Buffer.from(message.slice(0, 1024), 'utf8');
    const header = structuredHeader(req, P.REPLY_TYPE_ERROR, 6 + text.length, 6 + text.length);
    header.writeUInt32BE(error, P.STRUCTURED_HEADER_BYTES);
    header.writeUInt16BE(text.length, P.STRUCTURED_HEADER_BYTES + 4);
    text.copy(header, P.STRUCTURED_HEADER_BYTES + 6);
    this.send(req, header);
  }

  /** A final NBD_REPLY_TYPE_BLOCK_STATUS chunk; `descriptors` holds (length, flags) pairs. */
  blockStatus(req: NbdRequest, contextId: number, descriptors: number[]): void {
    const payloadBytes = 4 + descriptors.length * 4;
    const out = structuredHeader(req, P.REPLY_TYPE_BLOCK_STATUS, payloadBytes, payloadBytes);
    out.writeUInt32BE(contextId, P.STRUCTURED_HEADER_BYTES);
    let at = P.STRUCTURED_HEADER_BYTES + 4;
    for (const value of descriptors) {
      out.writeUInt32BE(value, at);
      at += 4;
    }
    this.send(req, out);
  }

  /** Hands the simple replies gathered so far to the socket: before it is ended. */
  flush(): void {
    this.sendBatch();
  }

  /**
   * False, with the request reported as replied, when the client is gone (the reply is dropped);
   * else true, with the socket corked until the end of the tick.
   */
  private open(req: NbdRequest): boolean {
    if (this.socket.destroyed || !this.socket.writable) {
      this.written(req);
      return false;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.release);
    }
    return true;
  }

  /** Hands the gathered simple replies to the socket, one write for all. */
  private sendBatch(): void {
    const batch = this.batch;
    const requests = this.batchRequests;
    if (!batch) return;
    this.batch = undefined;
    this.batchRequests = [];
    this.socket.write(batch.subarray(0, requests.length * P.SIMPLE_REPLY_BYTES), () => {
      for (const req of requests) this.written(req);
    });
  }

  private send(req: NbdRequest, header: Buffer, data?: Buffer): void {
    if (!this.open(req)) return;
    this.sendBatch(); // replies leave in the order they were made
    if (!data) {
      this.socket.write(header, () => this.written(req));
      return;
    }
    this.socket.write(header);
    // READ data comes from the device and is ours: recycle it once the socket has taken it.
    this.socket.write(data, () => {
      returnBuffer(data);
      this.written(req);
    });
  }
}

/** A structured chunk header with the DONE flag, followed by `extraBytes` of room for the payload. */
function structuredHeader(req: NbdRequest, type: number, payloadBytes: number, extraBytes: number): Buffer {
  const out = Buffer.allocUnsafe(P.STRUCTURED_HEADER_BYTES + extraBytes);
  out.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
  out.writeUInt16BE(P.REPLY_FLAG_DONE, 4);
  out.writeUInt16BE(type, 6);
  writeHandle(out, 8, req);
  out.writeUInt32BE(payloadBytes, 16);
  return out;
}

function writeSimple(out: Buffer, at: number, error: number, req: NbdRequest): void {
  out.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, at);
  out.writeUInt32BE(error, at + 4);
  writeHandle(out, at + 8, req);
}

function writeHandle(out: Buffer, at: number, req: NbdRequest): void {
  out.writeUInt32BE(req.handleHi, at);
  out.writeUInt32BE(req.handleLo, at + 4);
}
