// Fixed newstyle option haggling: greets the client, answers its options and, on NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME, hands back the opened export and what was negotiated for transmission.

import type pino from 'pino';
import { WeftError } from '../errors';
import type { ExportProvider, NbdExport, OpenPurpose } from './export-provider';
import type { ByteReader } from './byte-reader';
import * as D from './option-data';
import * as P from './protocol';
import { WarningLimiter } from './warning-limiter';

/** Option data longer than this is taken as abuse: the connection is dropped. */
const MAX_OPTION_DATA_BYTES = 64 * 1024;
/**
 * Unread handshake input held per connection: room for a client that sends options without waiting
 * for replies (most send a few at once), and always for one whole option, so that a read completes.
 */
export const MAX_HANDSHAKE_INPUT_BYTES = 64 * 1024 + P.OPTION_HEADER_BYTES + MAX_OPTION_DATA_BYTES;
/** The id the server gives base:allocation in NBD_OPT_SET_META_CONTEXT replies. */
export const BASE_ALLOCATION_ID = 1;
const PREFERRED_BLOCK_BYTES = 4096;
const KNOWN_CLIENT_FLAGS = P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES;

export interface HandshakeContext {
  provider: ExportProvider;
  peer: { address: string; port: number };
  maxRequestBytes: number;
  reader: ByteReader;
  /** Returns false when the socket's buffer is full (as net.Socket.write does). */
  write(data: Buffer): boolean;
  /** Resolves once the socket's buffer has drained; rejects if the connection closes first. */
  drained(): Promise<void>;
  log: pino.Logger;
}

/** What the transmission phase needs: the export, and the features the client asked for. */
export interface Negotiated {
  exportName: string;
  export: NbdExport;
  /** The transmission flags the client was sent: the requests it may make. */
  transmissionFlags: number;
  structuredReplies: boolean;
  /** base:allocation was selected for this export, so NBD_CMD_BLOCK_STATUS may be used. */
  blockStatus: boolean;
}

type Outcome = Negotiated | 'continue' | 'end';

/** An export the provider would not open, as the error reply that tells the client why. */
interface Refusal {
  refused: number;
  message: string;
}

/**
 * The transmission flags an export gets, from its device's answers; the same for NBD_OPT_INFO and the
 * NBD_OPT_GO after it. A read-only export offers nothing that writes, whatever the device says, and
 * FAST_ZERO only comes with WRITE_ZEROES, as the protocol requires.
 */
function transmissionFlags(exp: NbdExport, structuredReplies: boolean): number {
  const device = exp.device;
  let flags = P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH;
  if (device.readOnly) {
    flags |= P.FLAG_READ_ONLY;
  } else {
    if (device.canFua()) flags |= P.FLAG_SEND_FUA;
    if (device.canTrim()) flags |= P.FLAG_SEND_TRIM;
    if (device.canZero()) flags |= P.FLAG_SEND_WRITE_ZEROES;
    if (device.canZero() && device.canFastZero()) flags |= P.FLAG_SEND_FAST_ZERO;
  }
  if (device.canMultiConn()) flags |= P.FLAG_CAN_MULTI_CONN;
  if (structuredReplies) flags |= P.FLAG_SEND_DF;
  return flags;
}

/** Runs the handshake; resolves undefined when the connection is to be closed instead. */
export function negotiate(context: HandshakeContext): Promise<Negotiated | undefined> {
  return new Handshake(context).run();
}

class Handshake {
  private noZeroes = false;
  private structuredReplies = false;
  /** The export the last NBD_OPT_SET_META_CONTEXT selected base:allocation for. */
  private metaContextExport?: string;
  /** Replies are waiting in the socket: a client that does not read them must not be answered more. */
  private backlogged = false;
  /** Warnings about options the client may repeat (malformed, unknown export), rate-limited. */
  private readonly badInput: WarningLimiter;

  constructor(private readonly ctx: HandshakeContext) {
    this.badInput = new WarningLimiter(ctx.log);
  }

  async run(): Promise<Negotiated | undefined> {
    try {
      return await this.haggle();
    } finally {
      this.badInput.close();
    }
  }

  private async haggle(): Promise<Negotiated | undefined> {
    this.ctx.write(greeting());
    if (!this.acceptClientFlags((await this.ctx.reader.read(4)).readUInt32BE(0))) return undefined;
    for (;;) {
      if (this.backlogged) await this.ctx.drained();
      this.backlogged = false;
      const header = await this.ctx.reader.read(P.OPTION_HEADER_BYTES);
      if (header.readUInt32BE(0) !== P.IHAVEOPT_HI || header.readUInt32BE(4) !== P.IHAVEOPT_LO) {
        this.ctx.log.warn('NBD handshake: option without the IHAVEOPT magic; disconnecting');
        return undefined;
      }
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > MAX_OPTION_DATA_BYTES) {
        this.ctx.log.warn({ option, length }, 'NBD handshake: option data too long; disconnecting');
        return undefined;
      }
      const outcome = await this.answer(option, await this.ctx.reader.read(length));
      if (outcome !== 'continue') return outcome === 'end' ? undefined : outcome;
    }
  }

  private acceptClientFlags(flags: number): boolean {
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      this.ctx.log.warn({ clientFlags: flags }, 'NBD handshake: unknown client flags; disconnecting');
      return false;
    }
    this.noZeroes = (flags & P.FLAG_C_NO_ZEROES) !== 0;
    return true;
  }

  private async answer(option: number, data: Buffer): Promise<Outcome> {
    try {
      return await this.dispatch(option, data);
    } catch (err) {
      if (!(err instanceof D.InvalidOption)) throw err;
      this.badInput.warn({ option, reason: err.message }, 'NBD handshake: malformed option');
      return this.fail(option, P.REP_ERR_INVALID, err.message);
    }
  }

  private dispatch(option: number, data: Buffer): Outcome | Promise<Outcome> {
    switch (option) {
      case P.OPT_EXPORT_NAME:
        return this.exportName(data);
      case P.OPT_ABORT:
        this.reply(option, P.REP_ACK);
        return 'end';
      case P.OPT_LIST:
        return this.list(data);
      case P.OPT_STARTTLS:
        noData(data);
        return this.fail(option, P.REP_ERR_UNSUP, 'TLS is not supported by this server');
      case P.OPT_INFO:
      case P.OPT_GO:
        return this.infoOrGo(option, D.parseInfoRequest(data));
      case P.OPT_STRUCTURED_REPLY:
        noData(data);
        this.structuredReplies = true;
        return this.reply(option, P.REP_ACK);
      case P.OPT_LIST_META_CONTEXT:
        return this.listMetaContext(data);
      case P.OPT_SET_META_CONTEXT:
        return this.setMetaContext(data);
      default:
        this.ctx.log.debug({ option }, 'NBD handshake: unsupported option');
        return this.fail(option, P.REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  /** The old way in: no error can be returned, so an unknown export ends the session. */
  private async exportName(data: Buffer): Promise<Outcome> {
    let name: string;
    try {
      name = D.parseExportName(data);
    } catch (err) {
      this.ctx.log.warn({ reason: (err as Error).message }, 'NBD handshake: malformed NBD_OPT_EXPORT_NAME');
      return 'end';
    }
    const exp = await this.open(name, 'serve');
    if ('refused' in exp) return 'end';
    const flags = transmissionFlags(exp, this.structuredReplies);
    const reply = Buffer.alloc(this.noZeroes ? 10 : 134);
    D.exportInfoData(exp.device.sizeBytes, flags).copy(reply, 0, 2);
    this.ctx.write(reply);
    return this.negotiated(name, exp, flags);
  }

  private list(data: Buffer): Outcome {
    noData(data);
    for (const name of this.ctx.provider.names()) this.reply(P.OPT_LIST, P.REP_SERVER, D.serverData(name));
    return this.reply(P.OPT_LIST, P.REP_ACK);
  }

  private async infoOrGo(option: number, request: D.InfoRequest): Promise<Outcome> {
    const exp = await this.open(request.exportName, option === P.OPT_GO ? 'serve' : 'info');
    if ('refused' in exp) return this.fail(option, exp.refused, exp.message);
    const flags = transmissionFlags(exp, this.structuredReplies);
    this.reply(option, P.REP_INFO, D.exportInfoData(exp.device.sizeBytes, flags));
    if (request.infos.includes(P.INFO_NAME)) {
      this.reply(option, P.REP_INFO, D.stringInfoData(P.INFO_NAME, request.exportName));
    }
    // Sent even unasked: our maximum is tighter than the protocol's default of "unlimited".
    const blockSize = D.blockSizeInfoData(1, PREFERRED_BLOCK_BYTES, this.ctx.maxRequestBytes);
    this.reply(option, P.REP_INFO, blockSize);
    this.reply(option, P.REP_ACK);
    if (option === P.OPT_GO) return this.negotiated(request.exportName, exp, flags);
    this.closeExport(exp);
    return 'continue';
  }

  private listMetaContext(data: Buffer): Outcome {
    const option = P.OPT_LIST_META_CONTEXT;
    if (!this.structuredReplies) return this.needStructuredReplies(option);
    const { queries } = D.parseMetaContextRequest(data);
    if (queries.length === 0 || queries.some(D.listMatches)) {
      this.reply(option, P.REP_META_CONTEXT, D.metaContextData(0, P.META_CONTEXT_BASE_ALLOCATION));
    }
    return this.reply(option, P.REP_ACK);
  }

  private setMetaContext(data: Buffer): Outcome {
    const option = P.OPT_SET_META_CONTEXT;
    this.metaContextExport = undefined; // replaced even when the option fails
    if (!this.structuredReplies) return this.needStructuredReplies(option);
    const { exportName, queries } = D.parseMetaContextRequest(data);
    if (queries.some(D.selectsBaseAllocation)) {
      this.metaContextExport = exportName;
      this.reply(option, P.REP_META_CONTEXT, D.metaContextData(BASE_ALLOCATION_ID, P.META_CONTEXT_BASE_ALLOCATION));
    }
    return this.reply(option, P.REP_ACK);
  }

  private needStructuredReplies(option: number): Outcome {
    this.badInput.warn({ option }, 'NBD handshake: meta context option before NBD_OPT_STRUCTURED_REPLY');
    return this.fail(option, P.REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
  }

  private negotiated(exportName: string, exp: NbdExport, transmissionFlags: number): Negotiated {
    return {
      exportName,
      export: exp,
      transmissionFlags,
      structuredReplies: this.structuredReplies,
      blockStatus: this.structuredReplies && this.metaContextExport === exportName,
    };
  }

  /**
   * Opens an export, or says (and logs) why not: the provider's refusal of a malformed name
   * (NBD_REP_ERR_INVALID) or of one not allowed now (NBD_REP_ERR_POLICY), else an unknown export.
   */
  private async open(name: string, purpose: OpenPurpose): Promise<NbdExport | Refusal> {
    const unknown = { refused: P.REP_ERR_UNKNOWN, message: `no export named "${name}"` };
    let exp: NbdExport | undefined;
    try {
      exp = await this.ctx.provider.open(name, this.ctx.peer, purpose);
    } catch (err) {
      const refused = err instanceof WeftError ? REFUSALS[err.kind] : undefined;
      if (refused === undefined) {
        this.ctx.log.warn({ err, exportName: name }, 'NBD handshake: opening the export failed');
        return unknown;
      }
      this.badInput.warn({ exportName: name, reason: (err as Error).message }, 'NBD handshake: export refused');
      return { refused, message: (err as Error).message };
    }
    if (!exp) this.badInput.warn({ exportName: name }, 'NBD handshake: no such export');
    return exp ?? unknown;
  }

  private closeExport(exp: NbdExport): void {
    try {
      exp.close();
    } catch (err) {
      this.ctx.log.warn({ err }, 'NBD handshake: closing the export failed');
    }
  }

  private reply(option: number, type: number, data?: Buffer): 'continue' {
    if (!this.ctx.write(D.optionReply(option, type, data))) this.backlogged = true;
    return 'continue';
  }

  private fail(option: number, type: number, message: string): 'continue' {
    return this.reply(option, type, Buffer.from(message, 'utf8'));
  }
}

/** The option error replies for the WeftError kinds with which a provider refuses an export name. */
const REFUSALS: Partial<Record<WeftError['kind'], number>> = {
  INVALID_ARGUMENT: P.REP_ERR_INVALID,
  FAILED_PRECONDITION: P.REP_ERR_POLICY,
};

function greeting(): Buffer {
  const out = Buffer.allocUnsafe(18);
  out.writeUInt32BE(P.NBDMAGIC_HI, 0);
  out.writeUInt32BE(P.NBDMAGIC_LO, 4);
  out.writeUInt32BE(P.IHAVEOPT_HI, 8);
  out.writeUInt32BE(P.IHAVEOPT_LO, 12);
  out.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES, 16);
  return out;
}

/** Options that take no data: data present is malformed. */
function noData(data: Buffer): void {
  if (data.length !== 0) throw new D.InvalidOption('this option takes no data');
}
