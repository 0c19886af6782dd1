// An NBD client (fixed newstyle handshake, NBD_OPT_GO, simple replies) for the node's own use:
// replication sends a volume's writes to its replicas through it. Many requests may be in flight;
// a request that is not answered in time, or a connection that breaks, fails every pending request.

import net from 'node:net';
import { IoError } from '../errors';
import { totalBytes, type Pieces } from '../pieces';
import { ByteReader } from './byte-reader';
import { ioErrnoOf } from './errno';
import { writeU64 } from './option-data';
import * as P from './protocol';
import { ReplyParser, type ReplySink } from './reply-parser';

export interface NbdClientOptions {
  host: string;
  port: number;
  exportName: string;
  /** A request not answered within this fails, and the connection with it. */
  timeoutMs?: number;
  /** The handshake must end within this (default timeoutMs). */
  connectTimeoutMs?: number;
  /** The largest read this client will make (bounds what it buffers). */
  maxReadBytes?: number;
  /**
   * A FLUSH, or a request with FUA, may take this long (default timeoutMs) while the server shows
   * it is alive: a slow disk (an HDD with gigabytes to write back) makes only those wait. Alive is
   * a reply of any kind within timeoutMs; with nothing else answered meanwhile, the client asks for
   * one with a probe that must be answered within half of timeoutMs, so that a server cut off is
   * still given up on within timeoutMs. The probe is a READ of length 0, which weftd answers without
   * its device: a read of data could wait behind the same slow disk (a primary's read lease flushes
   * its copies). An older weftd answers it with EINVAL, which shows it alive as well.
   */
  durableTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
const DEFAULT_MAX_READ_BYTES = 32 * 1024 * 1024;
const REP_ERR_BIT = 0x80000000;
/** Payloads up to this are copied into the tick's one send; larger ones are written as they are. */
const COPIED_CHUNK_MAX_BYTES = 16 * 1024;
/** The size of a send slab (see NbdClient.slab); a new one is begun when a request does not fit. */
const SLAB_BYTES = 256 * 1024;
/** Full slabs kept for reuse: a queue deeper than this many slabs' worth is rare. */
const SPARE_SLABS = 2;
/** How long close() lets the server read NBD_CMD_DISC and close before the socket is destroyed. */
const CLOSE_LINGER_MS = 5000;
/** What the handshake may hold unread (its replies are small). */
const HANDSHAKE_READ_LIMIT_BYTES = 1024 * 1024;

interface Pending {
  /** Counts the connection's requests; its low 32 bits are the low half of the handle. */
  serial: number;
  type: number;
  lengthBytes: number;
  /** performance.now() (a clock no step of the wall clock moves) by which it must be answered. */
  deadline: number;
  /** A FLUSH or FUA request (0 for others): by when it must be answered while the server is alive. */
  durableDeadline: number;
  resolve(data: Buffer | undefined): void;
  reject(err: Error): void;
}

/** A send slab (see NbdClient.slab) and how many of the socket's writes still hold its bytes. */
interface Slab {
  bytes: Buffer;
  sending: number;
  full: boolean;
}

/** The server refused the export (unknown, policy, invalid name), with the server's message. */
export class ExportRefusedError extends Error {
  constructor(readonly exportName: string, readonly replyType: number, serverMessage: string) {
    super(`NBD server refused export "${exportName}": ${serverMessage || `reply type 0x${replyType.toString(16)}`}`);
    this.name = 'ExportRefusedError';
  }
}

/**
 * The connection itself failed (closed, reset, no reply in time, a reply that breaks the protocol):
 * the request may or may not have run on the server. An IoError EIO, like any data-path failure, but
 * distinguishable from an EIO the server answered (its disk failed), which the connection survives.
 */
export class NbdConnectionError extends IoError {
  constructor(message: string) {
    super('EIO', message);
    this.name = 'NbdConnectionError';
  }
}

export class NbdClient implements ReplySink {
  /**
   * Requests in flight, by slot. A request's handle is its slot (high 32 bits) and its serial (low),
   * so a reply finds its request by index: a Map that fills and empties with every request is
   * rebuilt every few dozen of them (perf: about 0.2 us of each replicated write). Freed slots are
   * taken again, so there are as many as requests ever in flight at once.
   */
  private slots: (Pending | undefined)[] = [];
  private freeSlots: number[] = [];
  private serial = 0;
  private failure: Error | undefined;
  private readonly sweep: NodeJS.Timeout;
  /** When the server last sent anything (performance.now()). */
  private heardAt = performance.now();
  private probing = false;
  /** The serial of the last probe sent. */
  private probeSerial = 0;
  /**
   * This tick's requests and small payloads are laid one after another in a slab and leave as one
   * buffer when the tick ends (or before a large payload): a socket write costs more than copying a
   * few KiB, and a header written in place costs no buffer of its own. Bytes before `unsentFrom` have
   * been handed to the socket, which may still hold them: they are never written over. A full slab
   * is used again once the socket has let go of every send from it: a new one each time costs fresh
   * pages (page faults) and work for the garbage collector on every ~64 writes.
   */
  private slab: Slab = { bytes: Buffer.allocUnsafe(0), sending: 0, full: true };
  private readonly spareSlabs: Buffer[] = [];
  private unsentFrom = 0;
  private slabEnd = 0;
  private sendScheduled = false;
  private readonly sendOutgoing = (): void => {
    this.sendScheduled = false;
    if (this.slabEnd === this.unsentFrom || this.failure) return;
    const slab = this.slab;
    slab.sending++;
    this.socket.write(slab.bytes.subarray(this.unsentFrom, this.slabEnd), () => this.sent(slab));
    this.unsentFrom = this.slabEnd;
  };
  private readonly parser = new ReplyParser(this);

  /** Takes over the socket after the handshake; `early` holds bytes that arrived with its end. */
  private constructor(
    private readonly socket: net.Socket,
    early: Buffer[],
    private readonly label: string,
    private readonly timeoutMs: number,
    private readonly durableTimeoutMs: number,
    private readonly maxReadBytes: number,
    readonly sizeBytes: number,
    readonly transmissionFlags: number,
  ) {
    this.sweep = setInterval(() => this.checkDeadlines(), Math.max(10, Math.min(500, timeoutMs / 4)));
    this.sweep.unref();
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.fail(new NbdConnectionError(`${label}: ${err.message}`)));
    socket.on('close', () => this.fail(new NbdConnectionError(`${label}: connection closed`)));
    for (const chunk of early) this.receive(chunk);
  }

  /**
   * Connects to the first of the export's names, newest form first, that the server does not refuse
   * as malformed (NBD_REP_ERR_INVALID): a node of an older version refuses a name with a mark it does
   * not know. Any other refusal is the answer.
   */
  static async connectFirstKnown(options: Omit<NbdClientOptions, 'exportName'>, exportNames: readonly string[]): Promise<NbdClient> {
    for (let i = 0; ; i++) {
      try {
        return await NbdClient.connect({ ...options, exportName: exportNames[i] });
      } catch (err) {
        const malformed = err instanceof ExportRefusedError && err.replyType === P.REP_ERR_INVALID;
        if (!malformed || i === exportNames.length - 1) throw err;
      }
    }
  }

  /** Connects and opens the export; rejects with ExportRefusedError if the server refuses it. */
  static async connect(options: NbdClientOptions): Promise<NbdClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const label = `nbd://${options.host}:${options.port}/${options.exportName}`;
    const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    const reader = new ByteReader(socket, HANDSHAKE_READ_LIMIT_BYTES);
    const onData = (chunk: Buffer) => reader.push(chunk);
    const onError = (err: Error) => reader.end(`${label}: ${err.message}`);
    const onClose = () => reader.end(`${label}: connection closed`);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    const connectTimeoutMs = options.connectTimeoutMs ?? timeoutMs;
    const timer = setTimeout(() => socket.destroy(new Error(`handshake timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
    try {
      const { sizeBytes, flags } = await handshake(socket, reader, options.exportName);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.resume(); // in case the reader paused it
      const maxReadBytes = options.maxReadBytes ?? DEFAULT_MAX_READ_BYTES;
      return new NbdClient(socket, reader.takeRest(), label, timeoutMs, options.durableTimeoutMs ?? timeoutMs, maxReadBytes, sizeBytes, flags);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get canFua(): boolean {
    return (this.transmissionFlags & P.FLAG_SEND_FUA) !== 0;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (lengthBytes > this.maxReadBytes) {
      return Promise.reject(new IoError('EINVAL', `${this.label}: a read of ${lengthBytes} bytes is over this client's limit of ${this.maxReadBytes}`));
    }
    return this.request(P.CMD_READ, 0, offsetBytes, lengthBytes) as Promise<Buffer>;
  }

  // The other requests resolve with undefined: their promise is returned as it is, not awaited in
  // an async wrapper (one promise and one turn of the microtask queue less per replicated write).
  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.request(P.CMD_WRITE, fuaFlag(fua), offsetBytes, Buffer.isBuffer(data) ? data.length : totalBytes(data), data) as Promise<void>;
  }

  flush(): Promise<void> {
    return this.request(P.CMD_FLUSH, 0, 0, 0) as Promise<void>;
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.request(P.CMD_TRIM, fuaFlag(fua), offsetBytes, lengthBytes) as Promise<void>;
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean, noHole: boolean): Promise<void> {
    return this.request(P.CMD_WRITE_ZEROES, fuaFlag(fua) | (noHole ? P.CMD_FLAG_NO_HOLE : 0), offsetBytes, lengthBytes) as Promise<void>;
  }

  /**
   * Sends NBD_CMD_DISC and closes; requests still pending fail. A server that has not closed its
   * end CLOSE_LINGER_MS later (it hangs, alive: a forwarder leaves such a primary) has the socket
   * destroyed, so that neither it nor the bytes still queued on it are kept for as long as it hangs.
   */
  close(): void {
    if (this.failure) return;
    this.socket.end(requestHeader(P.CMD_DISC, 0, 0, 0)); // the server closes once it has read it
    const linger = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
    linger.unref();
    this.socket.once('close', () => clearTimeout(linger));
    this.fail(new IoError('ESHUTDOWN', `${this.label}: connection closed by this client`), false);
  }

  /** Set once the connection is unusable: why. */
  get broken(): Error | undefined {
    return this.failure;
  }

  private request(type: number, flags: number, offsetBytes: number, lengthBytes: number, payload?: Buffer | Pieces, timeoutMs = this.timeoutMs): Promise<Buffer | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    // A server that did not offer FUA gets a FLUSH semantics from us instead: refuse rather than lie.
    if ((flags & P.CMD_FLAG_FUA) !== 0 && !this.canFua) return Promise.reject(new IoError('ENOTSUP', `${this.label}: the server does not accept FUA`));
    const slot = this.freeSlots.length > 0 ? (this.freeSlots.pop() as number) : this.slots.length;
    const serial = ++this.serial;
    const copied = payload && lengthBytes <= COPIED_CHUNK_MAX_BYTES ? lengthBytes : 0;
    const at = this.reserve(P.REQUEST_HEADER_BYTES + copied);
    try {
      writeRequestHeader(this.slab.bytes, at, type, flags, slot, serial >>> 0, offsetBytes, lengthBytes);
    } catch (err) {
      if (slot < this.slots.length) this.freeSlots.push(slot);
      this.slabEnd = at; // a value out of the protocol's range: nothing of the request may leave
      return Promise.reject(err);
    }
    if (copied > 0) copyPieces(payload as Buffer | Pieces, this.slab.bytes, at + P.REQUEST_HEADER_BYTES);
    else if (payload) {
      this.sendOutgoing();
      if (Buffer.isBuffer(payload)) this.socket.write(payload);
      else for (const piece of payload) this.socket.write(piece);
    }
    const now = performance.now();
    const durable = type === P.CMD_FLUSH || (flags & P.CMD_FLAG_FUA) !== 0;
    const durableDeadline = durable && this.durableTimeoutMs > this.timeoutMs ? now + this.durableTimeoutMs : 0;
    return new Promise((resolve, reject) => {
      this.slots[slot] = { serial, type, lengthBytes, deadline: now + timeoutMs, durableDeadline, resolve, reject };
    });
  }

  /** Room for bytes at the slab's end, sent when the tick ends; returns where they go. */
  private reserve(bytes: number): number {
    if (this.slabEnd + bytes > this.slab.bytes.length) {
      this.sendOutgoing();
      this.retire(this.slab);
      const spare = bytes <= SLAB_BYTES ? this.spareSlabs.pop() : undefined;
      this.slab = { bytes: spare ?? Buffer.allocUnsafe(Math.max(SLAB_BYTES, bytes)), sending: 0, full: false };
      this.unsentFrom = 0;
      this.slabEnd = 0;
    }
    if (!this.sendScheduled) {
      this.sendScheduled = true;
      process.nextTick(this.sendOutgoing);
    }
    const at = this.slabEnd;
    this.slabEnd += bytes;
    return at;
  }

  /** The socket is done with one send from slab (written to the kernel, or failed). */
  private sent(slab: Slab): void {
    slab.sending--;
    if (slab.full) this.retire(slab);
  }

  /** No more requests go into slab; once the socket holds none of its bytes, it may be used again. */
  private retire(slab: Slab): void {
    slab.full = true;
    if (slab.sending === 0 && slab.bytes.length === SLAB_BYTES && this.spareSlabs.length < SPARE_SLABS) {
      this.spareSlabs.push(slab.bytes);
      slab.bytes = Buffer.allocUnsafe(0); // retired once only
    }
  }

  /** ReplySink: a reply's header has arrived. */
  header(handle: number, error: number): number {
    const request = this.inFlight(handle);
    if (!request) throw new Error(`reply to unknown handle ${handle}`);
    return error === 0 && request.type === P.CMD_READ ? request.lengthBytes : 0;
  }

  /** ReplySink: a whole reply. */
  reply(handle: number, error: number, data: Buffer | undefined): void {
    const request = this.inFlight(handle) as Pending;
    const slot = slotOf(handle);
    this.slots[slot] = undefined;
    this.freeSlots.push(slot);
    if (error !== 0) request.reject(new IoError(ioErrnoOf(error), `${this.label}: server answered error ${error}`));
    else request.resolve(request.type === P.CMD_READ ? (data ?? Buffer.alloc(0)) : undefined);
  }

  private receive(chunk: Buffer): void {
    if (this.failure) return;
    this.heardAt = performance.now();
    try {
      this.parser.feed(chunk);
    } catch (err) {
      this.fail(new NbdConnectionError(`${this.label}: ${(err as Error).message}`));
    }
  }

  /** The request in flight that handle names, if any. */
  private inFlight(handle: number): Pending | undefined {
    const request = this.slots[slotOf(handle)];
    return request !== undefined && request.serial >>> 0 === handle >>> 0 ? request : undefined;
  }

  private checkDeadlines(): void {
    const now = performance.now();
    const alive = now - this.heardAt <= this.timeoutMs;
    let waitingOnDisk = false;
    for (const request of this.slots) {
      if (request === undefined) continue;
      // Past half its time: the server is asked to show it is alive if it has been silent as long.
      if (request.durableDeadline > 0 && now > request.deadline - this.timeoutMs / 2) waitingOnDisk = true;
      if (now <= request.deadline || (alive && now <= request.durableDeadline)) continue;
      this.fail(new NbdConnectionError(`${this.label}: ${this.lateness(request, now)}`));
      return;
    }
    if (waitingOnDisk && !this.probing && now - this.heardAt > this.timeoutMs / 2) this.probe();
  }

  private lateness(request: Pending, now: number): string {
    if (request.serial === this.probeSerial) return `no reply to a probe within ${this.timeoutMs / 2} ms while a FLUSH or FUA request waited`;
    if (request.durableDeadline === 0) return `no reply within ${this.timeoutMs} ms`;
    if (now > request.durableDeadline) return `no reply to a FLUSH or FUA request within ${this.durableTimeoutMs} ms`;
    return `nothing heard for ${this.timeoutMs} ms while a FLUSH or FUA request waited`;
  }

  /** A request whose answer shows the server alive while a FLUSH or FUA request waits on its disk. */
  private probe(): void {
    this.probing = true;
    const done = () => {
      this.probing = false;
    };
    this.request(P.CMD_READ, 0, 0, 0, undefined, this.timeoutMs / 2).then(done, done);
    this.probeSerial = this.serial;
  }

  /** Ends the connection for good (at once, unless it is closing cleanly): every pending and later request fails with err. */
  private fail(err: Error, destroy = true): void {
    clearInterval(this.sweep);
    this.failure ??= err;
    // A reset, not a close: the kernel would otherwise go on sending what is still queued, and a
    // request this end has given up on (failed to its caller) could reach the server long after,
    // over data written since.
    if (destroy && !this.socket.destroyed) this.socket.resetAndDestroy();
    const pending = this.slots.filter((request): request is Pending => request !== undefined);
    this.slots = [];
    this.freeSlots = [];
    for (const request of pending.sort((a, b) => a.serial - b.serial)) request.reject(this.failure);
  }
}

/** The slot a reply's handle names (its high 32 bits). */
function slotOf(handle: number): number {
  return Math.floor(handle / 2 ** 32);
}

function fuaFlag(fua: boolean): number {
  return fua ? P.CMD_FLAG_FUA : 0;
}

/** A request's header, its own buffer. */
function requestHeader(type: number, flags: number, offsetBytes: number, lengthBytes: number): Buffer {
  const header = Buffer.allocUnsafe(P.REQUEST_HEADER_BYTES);
  writeRequestHeader(header, 0, type, flags, 0, 0, offsetBytes, lengthBytes);
  return header;
}

function writeRequestHeader(out: Buffer, at: number, type: number, flags: number, handleHi: number, handleLo: number, offsetBytes: number, lengthBytes: number): void {
  out.writeUInt32BE(P.REQUEST_MAGIC, at);
  out.writeUInt16BE(flags, at + 4);
  out.writeUInt16BE(type, at + 6);
  out.writeUInt32BE(handleHi, at + 8);
  out.writeUInt32BE(handleLo, at + 12);
  writeU64(out, at + 16, offsetBytes);
  out.writeUInt32BE(lengthBytes, at + 24);
}

function copyPieces(payload: Buffer | Pieces, out: Buffer, at: number): void {
  if (Buffer.isBuffer(payload)) payload.copy(out, at);
  else for (const piece of payload) at += piece.copy(out, at);
}

/** Fixed newstyle handshake, then NBD_OPT_GO; returns the export's size and transmission flags. */
async function handshake(socket: net.Socket, reader: ByteReader, exportName: string): Promise<{ sizeBytes: number; flags: number }> {
  const greeting = await reader.read(18);
  const magic = [P.NBDMAGIC_HI, P.NBDMAGIC_LO, P.IHAVEOPT_HI, P.IHAVEOPT_LO];
  if (magic.some((word, i) => greeting.readUInt32BE(i * 4) !== word)) throw new Error('not an NBD newstyle server');
  const serverFlags = greeting.readUInt16BE(16);
  if ((serverFlags & P.FLAG_FIXED_NEWSTYLE) === 0) throw new Error('the NBD server does not speak fixed newstyle');
  const name = Buffer.from(exportName, 'utf8');
  const option = Buffer.alloc(4 + P.OPTION_HEADER_BYTES + 4 + name.length + 2);
  // NO_ZEROES only if the server offers it: the spec has a server drop a client that sets flags it did not.
  option.writeUInt32BE(P.FLAG_C_FIXED_NEWSTYLE | (serverFlags & P.FLAG_NO_ZEROES ? P.FLAG_C_NO_ZEROES : 0), 0);
  option.writeUInt32BE(P.IHAVEOPT_HI, 4);
  option.writeUInt32BE(P.IHAVEOPT_LO, 8);
  option.writeUInt32BE(P.OPT_GO, 12);
  option.writeUInt32BE(4 + name.length + 2, 16);
  option.writeUInt32BE(name.length, 20);
  name.copy(option, 24); // no information requests: NBD_INFO_EXPORT always comes
  socket.write(option);
  let export_: { sizeBytes: number; flags: number } | undefined;
  for (;;) {
    const header = await reader.read(P.OPTION_REPLY_HEADER_BYTES);
    if (header.readUInt32BE(0) !== P.OPTION_REPLY_MAGIC_HI || header.readUInt32BE(4) !== P.OPTION_REPLY_MAGIC_LO) {
      throw new Error('option reply without its magic');
    }
    const type = header.readUInt32BE(12);
    const data = await reader.read(header.readUInt32BE(16));
    if ((type & REP_ERR_BIT) !== 0) throw new ExportRefusedError(exportName, type, data.toString('utf8'));
    if (type === P.REP_INFO && data.readUInt16BE(0) === P.INFO_EXPORT) {
      export_ = { sizeBytes: data.readUInt32BE(2) * 0x100000000 + data.readUInt32BE(6), flags: data.readUInt16BE(10) };
    } else if (type === P.REP_ACK) {
      if (!export_) throw new Error('NBD_OPT_GO acknowledged without NBD_INFO_EXPORT');
      // Whatever came after the handshake (nothing, normally) stays in the reader for the replies.
      return export_;
    }
  }
}
