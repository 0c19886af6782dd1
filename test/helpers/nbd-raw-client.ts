// A deliberately small NBD client over node's net module, for tests that must send exactly the
// bytes they choose (malformed ones included) and read back exactly what the server answers.

import net from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Protocol numbers, written out here independently of the server's own constants.
export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 };
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4, ERR_UNSUP: 0x80000001, ERR_INVALID: 0x80000003, ERR_UNKNOWN: 0x80000006 };
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 };
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };
export const CMD_FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 };
export const TFLAG = { HAS_FLAGS: 1, READ_ONLY: 2, SEND_FLUSH: 4, SEND_FUA: 8, SEND_TRIM: 32, SEND_WRITE_ZEROES: 64, SEND_DF: 128, CAN_MULTI_CONN: 256, SEND_FAST_ZERO: 2048 };
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, BLOCK_STATUS: 5, ERROR: 0x8001 };
export const ERR = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95 };

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Request {
  type: number;
  flags?: number;
  handle?: bigint;
  offset?: number | bigint;
  length?: number;
  /** Sent after the header; for WRITE it defaults to nothing, so tests may send it separately. */
  payload?: Buffer;
}

export interface SimpleReply {
  error: number;
  handle: bigint;
}

export interface StructuredChunk {
  flags: number;
  type: number;
  handle: bigint;
  payload: Buffer;
}

export interface OpenedExport {
  client: RawNbdClient;
  transmissionFlags: number;
  sizeBytes: number;
}

export interface GoOptions {
  structured?: boolean;
  metaContexts?: string[];
  /** Information requests to list in NBD_OPT_GO. */
  infos?: number[];
}

export class RawNbdClient {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter?: () => void;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.waiter?.();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.off('error', reject);
        socket.setNoDelay(true);
        resolve(new RawNbdClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Connects and negotiates up to the transmission phase with NBD_OPT_GO; returns the flags. */
  static async open(port: number, exportName: string, options: GoOptions = {}): Promise<OpenedExport> {
    const client = await RawNbdClient.connect(port);
    await client.readGreeting();
    client.sendClientFlags(3);
    if (options.structured) await client.expectAck(OPT.STRUCTURED_REPLY);
    if (options.metaContexts) await client.setMetaContext(exportName, options.metaContexts);
    const replies = await client.optionExchange(OPT.GO, infoRequest(exportName, options.infos ?? []));
    const final = replies[replies.length - 1];
    if (final.type !== REP.ACK) throw new Error(`NBD_OPT_GO failed with reply type 0x${final.type.toString(16)}: ${final.data}`);
    const info = replies.find((reply) => reply.type === REP.INFO && reply.data.readUInt16BE(0) === INFO.EXPORT);
    if (!info) throw new Error('NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
    return { client, sizeBytes: Number(info.data.readBigUInt64BE(2)), transmissionFlags: info.data.readUInt16BE(10) };
  }

  async readGreeting(): Promise<number> {
    const greeting = await this.read(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    return greeting.readUInt16BE(16);
  }

  sendClientFlags(flags: number): void {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(flags >>> 0);
    this.socket.write(out);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), magic: bigint = IHAVEOPT, length = data.length): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(magic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(length, 12);
    this.socket.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const data = await this.read(header.readUInt32BE(16));
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data };
  }

  /** Sends an option and reads replies until the final one (ACK or an error); returns them all. */
  async optionExchange(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === REP.ACK || reply.type >= 0x80000000) return replies;
    }
  }

  async expectAck(option: number, data?: Buffer): Promise<void> {
    const replies = await this.optionExchange(option, data);
    if (replies.length !== 1 || replies[0].type !== REP.ACK) throw new Error(`option ${option} was not acknowledged`);
  }

  async setMetaContext(exportName: string, queries: string[]): Promise<OptionReply[]> {
    return this.optionExchange(OPT.SET_META_CONTEXT, metaContextRequest(exportName, queries));
  }

  sendRequest(request: Request): void {
    this.socket.write(encodeRequest(request));
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const header = await this.read(16);
    if (header.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`expected a simple reply, got magic 0x${header.readUInt32BE(0).toString(16)}`);
    return { error: header.readUInt32BE(4), handle: header.readBigUInt64BE(8) };
  }

  async readStructuredChunk(): Promise<StructuredChunk> {
    const header = await this.read(20);
    const magic = header.readUInt32BE(0);
    if (magic !== STRUCTURED_REPLY_MAGIC) throw new Error(`expected a structured reply, got magic 0x${magic.toString(16)}`);
    const payload = await this.read(header.readUInt32BE(16));
    return { flags: header.readUInt16BE(4), type: header.readUInt16BE(6), handle: header.readBigUInt64BE(8), payload };
  }

  /** Simple-reply WRITE: header and payload in one go; resolves with the error value. */
  async write(offset: number, data: Buffer, flags = 0): Promise<number> {
    this.sendRequest({ type: CMD.WRITE, flags, offset, length: data.length, payload: data });
    return (await this.readSimpleReply()).error;
  }

  /** Simple-reply READ: resolves with the data, or throws with the error value. */
  async readData(offset: number, length: number): Promise<Buffer> {
    this.sendRequest({ type: CMD.READ, offset, length });
    const reply = await this.readSimpleReply();
    if (reply.error !== 0) throw new Error(`READ failed with error ${reply.error}`);
    return this.read(length);
  }

  /** Resolves with exactly `bytes` bytes; rejects if the connection closes first. */
  async read(bytes: number): Promise<Buffer> {
    while (this.buffered < bytes) {
      if (this.ended) throw new Error(`connection closed while waiting for ${bytes} bytes (${this.buffered} buffered)`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = all.length > bytes ? [all.subarray(bytes)] : [];
    this.buffered -= bytes;
    return all.subarray(0, bytes);
  }

  /**
   * Sends an option without data over and over, reading no reply, until `limitBytes` are sent,
   * `timeoutMs` have passed, the server has taken none for `stallMs`, or the connection closes;
   * resolves with the bytes sent.
   */
  async floodOption(option: number, limits: { limitBytes: number; timeoutMs: number; stallMs: number }): Promise<number> {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    const batch = Buffer.concat(Array.from({ length: 65536 }, () => header)); // 1 MiB
    const deadline = Date.now() + limits.timeoutMs;
    let sent = 0;
    while (sent < limits.limitBytes && Date.now() < deadline && !this.socket.destroyed) {
      sent += batch.length;
      if (this.socket.write(batch)) continue;
      const waitMs = Math.min(limits.stallMs, deadline - Date.now());
      if (!(await this.drainedWithin(waitMs)) && waitMs === limits.stallMs) break;
    }
    return sent;
  }

  /** Resolves true once the socket's buffer has drained, false if it has not within `timeoutMs`. */
  drainedWithin(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const settle = (drained: boolean) => {
        clearTimeout(timer);
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
        resolve(drained);
      };
      const onDrain = () => settle(true);
      const onClose = () => settle(false);
      const timer = setTimeout(() => settle(false), timeoutMs);
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  /** Resolves true if the server closes the connection within `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const result = await Promise.race([this.closed.then(() => true), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function encodeRequest(request: Request): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(REQUEST_MAGIC, 0);
  header.writeUInt16BE(request.flags ?? 0, 4);
  header.writeUInt16BE(request.type, 6);
  header.writeBigUInt64BE(request.handle ?? 0x1122334455667788n, 8);
  header.writeBigUInt64BE(BigInt(request.offset ?? 0), 16);
  header.writeUInt32BE(request.length ?? 0, 24);
  return request.payload ? Buffer.concat([header, request.payload]) : header;
}

export function infoRequest(exportName: string, infos: number[]): Buffer {
  const name = Buffer.from(exportName);
  const out = Buffer.alloc(4 + name.length + 2 + infos.length * 2);
  out.writeUInt32BE(name.length, 0);
  name.copy(out, 4);
  out.writeUInt16BE(infos.length, 4 + name.length);
  infos.forEach((info, i) => out.writeUInt16BE(info, 6 + name.length + i * 2));
  return out;
}

export function metaContextRequest(exportName: string, queries: string[]): Buffer {
  const parts: Buffer[] = [u32(Buffer.byteLength(exportName)), Buffer.from(exportName), u32(queries.length)];
  for (const query of queries) parts.push(u32(Buffer.byteLength(query)), Buffer.from(query));
  return Buffer.concat(parts);
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}
