// Payloads of handshake options and option replies: parsing what a client sends (with bounds
// checks that throw InvalidOption) and encoding what the server answers. Pure functions.

import * as P from './protocol';

/** The option's data is malformed; the handshake answers NBD_REP_ERR_INVALID with this message. */
export class InvalidOption extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidOption';
  }
}

export interface InfoRequest {
  exportName: string;
  /** NBD_INFO_* types the client asked for. */
  infos: number[];
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** Reads big-endian fields from option data, throwing InvalidOption instead of reading past it. */
class Cursor {
  private at = 0;
  constructor(private readonly data: Buffer) {}

  u16(): number {
    this.need(2);
    this.at += 2;
    return this.data.readUInt16BE(this.at - 2);
  }

  u32(): number {
    this.need(4);
    this.at += 4;
    return this.data.readUInt32BE(this.at - 4);
  }

  string(bytes: number, what: string): string {
    if (bytes > P.MAX_STRING_BYTES) throw new InvalidOption(`${what} is longer than ${P.MAX_STRING_BYTES} bytes`);
    this.need(bytes);
    const raw = this.data.subarray(this.at, this.at + bytes);
    this.at += bytes;
    if (raw.includes(0)) throw new InvalidOption(`${what} contains a NUL byte`);
    return raw.toString('utf8');
  }

  end(): void {
    if (this.at !== this.data.length) throw new InvalidOption(`${this.data.length - this.at} unexpected trailing bytes`);
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.data.length) throw new InvalidOption('option data is shorter than its fields say');
  }
}

/** NBD_OPT_INFO and NBD_OPT_GO: name length, name, count of info requests, the requests. */
export function parseInfoRequest(data: Buffer): InfoRequest {
  const cursor = new Cursor(data);
  const exportName = cursor.string(cursor.u32(), 'export name');
  const count = cursor.u16();
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(cursor.u16());
  cursor.end();
  return { exportName, infos };
}

/** NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: export name, then queries. */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest {
  const cursor = new Cursor(data);
  const exportName = cursor.string(cursor.u32(), 'export name');
  const count = cursor.u32();
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(cursor.string(cursor.u32(), 'query'));
  cursor.end();
  return { exportName, queries };
}

/** The string an NBD_OPT_EXPORT_NAME carries as its whole data. */
export function parseExportName(data: Buffer): string {
  return new Cursor(data).string(data.length, 'export name');
}

/** Contexts a LIST_META_CONTEXT query matches; "base:" is the wildcard for our one context. */
export function listMatches(query: string): boolean {
  return query === 'base:' || query === P.META_CONTEXT_BASE_ALLOCATION;
}

/** Whether a SET_META_CONTEXT query selects base:allocation (unknown queries are ignored). */
export function selectsBaseAllocation(query: string): boolean {
  return query === P.META_CONTEXT_BASE_ALLOCATION;
}

export function optionReply(option: number, type: number, data?: Buffer): Buffer {
  const length = data ? data.length : 0;
  const out = Buffer.allocUnsafe(P.OPTION_REPLY_HEADER_BYTES + length);
  out.writeUInt32BE(P.OPTION_REPLY_MAGIC_HI, 0);
  out.writeUInt32BE(P.OPTION_REPLY_MAGIC_LO, 4);
  out.writeUInt32BE(option >>> 0, 8);
  out.writeUInt32BE(type >>> 0, 12);
  out.writeUInt32BE(length, 16);
  if (data) data.copy(out, P.OPTION_REPLY_HEADER_BYTES);
  return out;
}

/** Data of NBD_REP_SERVER: name length and name. */
export function serverData(name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

/** Data of NBD_REP_META_CONTEXT: context id and name. */
export function metaContextData(id: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(id, 0);
  bytes.copy(out, 4);
  return out;
}

/** NBD_INFO_EXPORT: size and transmission flags (also the tail of NBD_OPT_EXPORT_NAME's reply). */
export function exportInfoData(sizeBytes: number, transmissionFlags: number): Buffer {
  const out = Buffer.allocUnsafe(12);
  out.writeUInt16BE(P.INFO_EXPORT, 0);
  writeU64(out, 2, sizeBytes);
  out.writeUInt16BE(transmissionFlags, 10);
  return out;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type and a string. */
export function stringInfoData(type: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(type, 0);
  bytes.copy(out, 2);
  return out;
}

export function blockSizeInfoData(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const out = Buffer.allocUnsafe(14);
  out.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
  out.writeUInt32BE(minimumBytes, 2);
  out.writeUInt32BE(preferredBytes, 6);
  out.writeUInt32BE(maximumBytes, 10);
  return out;
}

/** Writes a non-negative safe integer as an unsigned 64-bit big-endian value. */
export function writeU64(out: Buffer, at: number, value: number): void {
  out.writeUInt32BE(Math.floor(value / 0x100000000), at);
  out.writeUInt32BE(value >>> 0, at + 4);
}
