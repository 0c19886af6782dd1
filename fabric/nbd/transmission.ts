// The transmission phase of one connection: parses requests, sends each valid one to the device
// at once (many in flight), replies in completion order, and ends the connection cleanly.

import type net from 'node:net';
import type pino from 'pino';
import type { BlockDevice, Extent } from '../volume/block-device';
import type { Negotiated } from './handshake';
import { BASE_ALLOCATION_ID } from './handshake';
import { allocationDescriptors, BLOCK_STATUS_HELD_BYTES } from './block-status';
import { nbdErrorOf } from './errno';
import { ConnectionInFlight, type NodeInFlightBudget } from './inflight-budget';
import { ReplyWriter } from './reply-writer';
import { checkRequest, COMMAND_NAMES, type RequestLimits } from './request-checks';
import { NbdRequest, RequestParser, type RequestSink } from './request-parser';
import * as P from './protocol';
import { WarningLimiter } from './warning-limiter';

/**
 * Reading pauses while this many requests are in flight (from being read until their reply has left
 * the socket's buffer), or while their bytes reach the connection's or the node's cap.
 */
const MAX_IN_FLIGHT = 256;

/** What a READ of length 0 reads. */
const NOTHING = Buffer.alloc(0);

export interface TransmissionOptions {
  socket: net.Socket;
  negotiated: Negotiated;
  maxRequestBytes: number;
  /** Bytes of requests and replies this connection may hold before it stops reading. */
  maxInFlightBytes: number;
  /** The node's cap across connections. */
  budget: NodeInFlightBudget;
  /** Once every reply is handed to the socket at the end, how long they may take to leave before the socket is cut. */
  drainTimeoutMs: number;
  log: pino.Logger;
  /** Called once, after the socket has closed and the export has been closed. */
  onEnded(): void;
}

/** How long a connection done with its replies reads what its client still sends before it closes (finish()). */
const CLOSE_LINGER_MS = 500;

export class Transmission implements RequestSink {
  private readonly socket: net.Socket;
  private readonly device: BlockDevice;
  private readonly log: pino.Logger;
  private readonly parser: RequestParser;
  private readonly writer: ReplyWriter;
  private readonly limits: RequestLimits;
  private readonly inFlight: ConnectionInFlight;
  private readonly warnings: WarningLimiter;
  /** Device calls not yet finished. */
  private running = 0;
  /** What the running device calls' requests hold (NbdRequest.heldBytes). */
  private runningBytes = 0;
  /** The unparsed rest of a chunk, kept while reading is paused for backpressure. */
  private stalled?: Buffer;
  /** No more requests are read: DISC, end of input, a protocol violation or server shutdown. */
  private stopping = false;
  /** The input ended while bytes before its end were held back (stalled): they are read first. */
  private inputEnded = false;
  private socketClosed = false;
  /** Cuts a connection whose client does not read its last replies (finish). */
  private drainDeadline?: NodeJS.Timeout;
  /** Cuts a connection whose client stopped in the middle of a request (checkMidRequest). */
  private midRequestCheck?: NodeJS.Timeout;
  /** When the last bytes came in (performance.now()). */
  private lastInputAt = 0;
  /** When the WRITE payload being read began. */
  private payloadStartedAt = 0;
  /** Replies that have left the socket's buffer (checkUnreadReplies), and what had left at its last check. */
  private repliesLeft = 0;
  private leftAtCheck = '';
  /** Since when replies wait in the socket's buffer, none of their bytes leaving, while the node's budget is full. */
  private unreadSince: number | undefined;
  private released = false;
  /** The export was told that the client is gone with requests in flight (NbdExport.abandon). */
  private abandoned = false;
  /**
   * The client sent NBD_CMD_DISC (a soft disconnect): the requests before it are handled to the end
   * (the NBD spec), also if the client closes its socket without waiting for their replies.
   */
  private disconnecting = false;

  constructor(private readonly options: TransmissionOptions) {
    this.socket = options.socket;
    this.device = options.negotiated.export.device;
    this.log = options.log;
    this.parser = new RequestParser(this, options.maxRequestBytes);
    this.writer = new ReplyWriter(this.socket, (req) => this.replied(req));
    this.inFlight = new ConnectionInFlight(options.budget, MAX_IN_FLIGHT, options.maxInFlightBytes, () => this.resumeIfPossible());
    this.warnings = new WarningLimiter(this.log);
    this.limits = {
      sizeBytes: 0,
      transmissionFlags: options.negotiated.transmissionFlags,
      structuredReplies: options.negotiated.structuredReplies,
      blockStatus: options.negotiated.blockStatus,
      maxRequestBytes: options.maxRequestBytes,
    };
  }

  /** Takes over the socket; `early` holds bytes that arrived with the end of the handshake. */
  start(early: Buffer[]): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.lastInputAt = performance.now();
      this.onData(chunk);
    });
    this.socket.on('end', () => this.onInputEnd());
    this.socket.on('close', () => this.onClose());
    if (this.socket.destroyed) {
      this.onClose();
      return;
    }
    this.lastInputAt = performance.now();
    this.midRequestCheck = setInterval(() => {
      this.checkMidRequest();
      this.checkUnreadReplies();
    }, Math.max(100, this.options.drainTimeoutMs / 4)).unref();
    if (early.length > 0) this.onData(Buffer.concat(early));
    if (this.socket.readableEnded) this.onInputEnd(); // the client half-closed during the handshake
    else if (!this.stalled && !this.stopping) this.socket.resume(); // the handshake may have paused it
  }

  /** Reads no more requests; replies to those in flight, then closes. Also used for server shutdown. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stalled = undefined;
    this.socket.pause();
    if (this.running === 0) this.finish();
  }

  payloadStarts(req: NbdRequest): void {
    req.heldBytes = req.lengthBytes;
    this.inFlight.reserve(req.lengthBytes);
    this.payloadStartedAt = performance.now();
  }

  request(req: NbdRequest): void {
    if (req.type === P.CMD_DISC) {
      this.log.debug('NBD: client sent DISC');
      this.disconnecting = true;
      this.stop();
      return;
    }
    this.limits.sizeBytes = this.device.sizeBytes;
    const rejection = checkRequest(req, this.limits);
    if (rejection) this.reject(req, rejection.error, rejection.reason);
    else this.dispatch(req);
  }

  badMagic(magic: number): void {
    this.log.warn({ magic: `0x${magic.toString(16)}` }, 'NBD: request with a wrong magic; disconnecting');
    this.stop();
  }

  private onData(chunk: Buffer): void {
    try {
      this.consume(chunk);
    } catch (err) {
      this.log.warn({ err }, 'NBD: internal error while reading requests; disconnecting');
      this.socket.destroy();
    }
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.stopping) {
      // Not in a WRITE's payload, which is counted from its start and read to its end; in a header
      // too (it holds at most 27 bytes): else one read while there was room, and its last byte once
      // there is none, would make any number of clients each hold a whole payload beyond the cap.
      if (!this.parser.inPayload() && this.inFlight.full()) {
        this.stalled = chunk.subarray(at);
        this.socket.pause();
        this.inFlight.waitForRoom();
        return;
      }
      at = this.parser.feed(chunk, at);
    }
  }

  /**
   * A client that stops in the middle of a request (a WRITE's payload cut short: it hung, or the
   * network went) would hold what it sent of it for good; it is cut once it has sent nothing for the
   * drain deadline. Not while this side holds its input back (backpressure).
   */
  private checkMidRequest(): void {
    if (this.stopping || this.stalled || !this.parser.midRequest()) return;
    const now = performance.now();
    if (now - this.lastInputAt >= this.options.drainTimeoutMs) {
      this.log.warn(`NBD: the client sent nothing for ${this.options.drainTimeoutMs} ms in the middle of a request; disconnecting`);
      this.socket.destroy();
      return;
    }
    // One that sends a byte now and then holds its whole payload's room all the same: a few such
    // clients would fill the node's budget and stall every other connection. While the budget is
    // full, a payload still coming after the drain deadline (a whole one takes well under a second
    // on any network a block device is used over) is cut.
    if (this.parser.inPayload() && this.options.budget.full() && now - this.payloadStartedAt >= this.options.drainTimeoutMs) {
      this.log.warn(`NBD: a WRITE's payload still coming after ${this.options.drainTimeoutMs} ms while the node's in-flight budget is full; disconnecting`);
      this.socket.destroy();
    }
  }

  /**
   * A client that reads none of its replies (a paused VM, a hostile one) holds the bytes of those
   * waiting in the socket's buffer. While the node's budget is full, other connections wait for them
   * (and once it is past its overdraft, even a connection that holds nothing does): it is cut once
   * nothing of its replies has left for the drain deadline, the budget full all that time. With room
   * in the budget it harms no one and is left alone.
   */
  private checkUnreadReplies(): void {
    if (this.stopping) return; // finish() has its own deadline
    // What has left: whole replies, and the bytes handed to the kernel (a large reply leaves in parts).
    const left = `${this.repliesLeft}/${this.socket.bytesWritten - this.socket.writableLength}`;
    const moved = left !== this.leftAtCheck;
    this.leftAtCheck = left;
    if (moved || this.socket.writableLength === 0 || !this.options.budget.full()) {
      this.unreadSince = undefined;
      return;
    }
    const now = performance.now();
    this.unreadSince ??= now;
    if (now - this.unreadSince < this.options.drainTimeoutMs) return;
    this.log.warn(
      { pendingBytes: this.socket.writableLength },
      `NBD: nothing of the client's replies has left for ${this.options.drainTimeoutMs} ms while the node's in-flight budget is full (it reads nothing); disconnecting`,
    );
    this.socket.destroy();
  }

  private resumeIfPossible(): void {
    // Cut (destroyed): what it sent and was held back never runs. The replies its requests let go
    // of on the way out (their write callbacks come before 'close') would otherwise resume it.
    if (this.stopping || !this.stalled || this.socket.destroyed) return;
    if (this.inFlight.full()) {
      this.inFlight.waitForRoom(); // woken when the node had room, but another connection took it first
      return;
    }
    const rest = this.stalled;
    this.stalled = undefined;
    this.lastInputAt = performance.now(); // held back meanwhile: the client's silence counts from now
    this.onData(rest);
    if (this.stalled || this.stopping) return;
    if (this.inputEnded) this.onInputEnd();
    else this.socket.resume();
  }

  /** A request that does not reach the device: a rejected WRITE's payload is dropped at once. */
  private reject(req: NbdRequest, error: number, reason: string): void {
    this.warnings.warn(requestFields(req, error), `NBD: ${reason}`);
    req.payload = undefined;
    this.inFlight.add(0);
    this.replyError(req, error, reason);
  }

  /** The reply has left the socket's buffer (or the client is gone): the request holds nothing more. */
  private replied(req: NbdRequest): void {
    this.repliesLeft++;
    this.inFlight.remove(req.heldBytes);
    this.resumeIfPossible();
  }

  private replyError(req: NbdRequest, error: number, message: string): void {
    if (this.limits.structuredReplies) this.writer.error(req, error, message);
    else this.writer.simple(req, error);
  }

  private dispatch(req: NbdRequest): void {
    this.running++;
    const reserved = req.heldBytes; // a WRITE's payload, counted as it began to arrive (payloadStarts)
    req.heldBytes = heldBytes(req);
    this.runningBytes += req.heldBytes;
    this.inFlight.add(req.heldBytes - reserved);
    let pending: Promise<unknown>;
    try {
      pending = this.execute(req);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (result) => this.complete(req, result, false),
      (err: unknown) => this.complete(req, err, true),
    );
  }

  private execute(req: NbdRequest): Promise<unknown> {
    const fua = (req.flags & P.CMD_FLAG_FUA) !== 0;
    switch (req.type) {
      case P.CMD_READ:
        return req.lengthBytes === 0 ? Promise.resolve(NOTHING) : this.device.read(req.offsetBytes, req.lengthBytes);
      case P.CMD_WRITE:
        return this.device.write(req.offsetBytes, req.payload as Buffer[], fua);
      case P.CMD_FLUSH:
        return this.device.flush();
      case P.CMD_TRIM:
        return this.device.trim(req.offsetBytes, req.lengthBytes, fua);
      case P.CMD_WRITE_ZEROES:
        return this.device.writeZeroes(req.offsetBytes, req.lengthBytes, {
          fua,
          noHole: (req.flags & P.CMD_FLAG_NO_HOLE) !== 0,
          fastZero: (req.flags & P.CMD_FLAG_FAST_ZERO) !== 0,
        });
      default:
        return this.device.blockStatus(req.offsetBytes, req.lengthBytes);
    }
  }

  /** Replies to a finished request; whatever happens, its device call stops counting as running. */
  private complete(req: NbdRequest, outcome: unknown, failed: boolean): void {
    try {
      if (failed) this.failed(req, outcome);
      else this.succeeded(req, outcome);
    } catch (err) {
      this.log.warn({ err }, 'NBD: internal error while replying; disconnecting');
      this.socket.destroy();
    }
    this.running--;
    this.runningBytes -= req.heldBytes;
    if (this.socketClosed) this.inFlight.endedAfterClose(req.heldBytes);
    if (this.running > 0) return;
    if (this.socketClosed) this.release();
    else if (this.stopping) this.finish();
  }

  private succeeded(req: NbdRequest, result: unknown): void {
    if (req.type === P.CMD_READ) this.replyRead(req, result);
    else if (req.type === P.CMD_BLOCK_STATUS) this.replyBlockStatus(req, result as Extent[]);
    else this.writer.simple(req, 0);
  }

  private replyRead(req: NbdRequest, data: unknown): void {
    if (!Buffer.isBuffer(data) || data.length !== req.lengthBytes) {
      this.failed(req, new Error(`device returned ${Buffer.isBuffer(data) ? data.length : typeof data} for a read of ${req.lengthBytes} bytes`));
    } else if (data.length === 0) {
      if (this.limits.structuredReplies) this.writer.none(req);
      else this.writer.simple(req, 0);
    } else if (this.limits.structuredReplies) {
      this.writer.offsetData(req, data);
    } else {
      this.writer.simple(req, 0, data);
    }
  }

  private replyBlockStatus(req: NbdRequest, extents: Extent[]): void {
    const reqOne = (req.flags & P.CMD_FLAG_REQ_ONE) !== 0;
    this.writer.blockStatus(req, BASE_ALLOCATION_ID, allocationDescriptors(extents, req.lengthBytes, reqOne));
  }

  private failed(req: NbdRequest, err: unknown): void {
    const { value, expected } = nbdErrorOf(err, req.flags);
    // A failing disk fails every request: the first ones are logged in full, the rest counted.
    this.warnings.warn({ ...requestFields(req, value), err }, expected ? 'NBD: device error' : 'NBD: unexpected device failure');
    // The device's message is for the log (it may name files); the client gets the command and errno.
    this.replyError(req, value, `${COMMAND_NAMES[req.type]} failed with error ${value}`);
  }

  private onInputEnd(): void {
    // A paused socket still ends once its buffer is empty: requests held back for backpressure (a
    // DISC among them, perhaps) were sent before the end and are read first (resumeIfPossible).
    if (this.stalled) {
      this.inputEnded = true;
      return;
    }
    if (this.parser.midRequest() && !this.stopping) this.log.warn('NBD: client closed the connection in the middle of a request');
    // Closed without NBD_CMD_DISC: a hard disconnect, the client will not read the replies of its
    // requests in flight. After a DISC (a soft disconnect) they run on (abandonExport asks).
    this.abandonExport();
    this.stop();
  }

  /**
   * Every reply has been handed to the socket: flush them and close. With input the client sent
   * unread (after a wrong magic, or at shutdown), closing the socket would answer with a reset,
   * which may drop replies the client has not read yet: the replies leave with a FIN, and what still
   * comes is read and dropped (stopping) until the client closes its end too, or for CLOSE_LINGER_MS
   * once the kernel has every reply (it sends them on after the close). After a DISC, a client sends
   * nothing more: closed at once, as its tools expect the export to be let go of.
   */
  private finish(): void {
    this.writer.flush();
    if (this.socket.destroyed) return;
    if (this.socket.readableEnded || this.disconnecting) this.socket.destroySoon();
    else {
      this.socket.end();
      this.socket.once('end', () => this.socket.destroySoon());
      this.socket.once('finish', () => setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref());
      this.socket.resume();
    }
    // A client that reads nothing more (a paused VM, a hostile one) would otherwise hold the connection,
    // its export and its memory for ever, and a shutdown of weftd would wait for it.
    this.drainDeadline ??= setTimeout(() => {
      this.log.warn({ pendingBytes: this.socket.writableLength }, `NBD: the client did not read its last replies within ${this.options.drainTimeoutMs} ms; disconnecting`);
      this.socket.destroy();
    }, this.options.drainTimeoutMs);
  }

  private onClose(): void {
    clearTimeout(this.drainDeadline);
    clearInterval(this.midRequestCheck);
    this.socketClosed = true;
    this.stopping = true;
    this.stalled = undefined;
    this.inFlight.close(this.runningBytes);
    this.warnings.close();
    if (this.running === 0) this.release();
    else this.abandonExport();
  }

  /** The client is gone with requests in flight: no one will read their replies (NbdExport.abandon). */
  private abandonExport(): void {
    if (this.abandoned || this.disconnecting || this.running === 0) return;
    this.abandoned = true;
    try {
      this.options.negotiated.export.abandon?.();
    } catch (err) {
      this.log.warn({ err }, 'NBD: abandoning the export failed');
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    try {
      this.options.negotiated.export.close();
    } catch (err) {
      this.log.warn({ err }, 'NBD: closing the export failed');
    }
    this.options.onEnded();
  }
}

/** Bytes a request holds while in flight: its payload or the data its reply will carry; a BLOCK_STATUS, its extents and reply at most. */
function heldBytes(req: NbdRequest): number {
  if (req.type === P.CMD_BLOCK_STATUS) return BLOCK_STATUS_HELD_BYTES;
  return req.type === P.CMD_READ || req.type === P.CMD_WRITE ? req.lengthBytes : 0;
}

function requestFields(req: NbdRequest, error: number): Record<string, unknown> {
  return { command: COMMAND_NAMES[req.type] ?? req.type, flags: req.flags, offset: req.offsetBytes, length: req.lengthBytes, error };
}
