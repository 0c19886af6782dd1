// What the crash-model test's child and parent share: the operations the child reports, one line
// each (`S <json>` before an operation starts, `A <id>` once it is acknowledged), and the
// contents every write puts into each block, so that a block read back names the write it holds;
// and the pools both open.

import * as fs from 'fs';
import * as path from 'path';
import type { EngineOptions } from '../../fabric/volume/local-engine';

export const BLOCK = 4096;
const MiB = 1024 * 1024;
/**
 * Two pools (as in model.test.ts): "default" has two members of unequal size, so that a run of
 * blocks can cross from one file to the other; "fast" has one. Volumes and clones are made in
 * either, so that chains cross pools.
 */
const MEMBERS = [
  { class: 'default', sizeBytes: 40 * MiB },
  { class: 'default', sizeBytes: 24 * MiB },
  { class: 'fast', sizeBytes: 32 * MiB },
];
export const CLASSES = ['default', 'fast'];

export interface IoOp {
  id: number;
  kind: 'write' | 'trim' | 'zeroes';
  volume: string;
  offset: number;
  length: number;
  fua: boolean;
}
export type ControlOp =
  | { id: number; kind: 'createVolume'; name: string; sizeBytes: number; class: string }
  | { id: number; kind: 'resize'; name: string; sizeBytes: number }
  | { id: number; kind: 'deleteVolume'; name: string }
  | { id: number; kind: 'snapshot'; volume: string; name: string }
  | { id: number; kind: 'deleteSnapshot'; volume: string; name: string }
  | { id: number; kind: 'clone'; volume: string; snapshot: string; name: string; sizeBytes: number; class: string }
  | { id: number; kind: 'revert'; volume: string; snapshot: string };
export type Op = IoOp | ControlOp | { id: number; kind: 'flush' };

export function isIo(op: Op): op is IoOp {
  return op.kind === 'write' || op.kind === 'trim' || op.kind === 'zeroes';
}

/** The pools both processes open: each member is a file in a subdirectory of dir, made here. */
export function poolSpec(dir: string): EngineOptions['pools'] {
  return MEMBERS.map((member, i) => {
    const memberDir = path.join(dir, `member-${i}`);
    fs.mkdirSync(memberDir, { recursive: true });
    return { ...member, path: memberDir };
  });
}

/** Block `block` of the volume as write `op` fills it: the op and block number, then a fill of both. */
export function stampBlock(op: number, block: number): Buffer {
  const buf = Buffer.alloc(BLOCK, (op * 31 + block * 7) & 0xff);
  buf.writeUInt32LE(op, 0);
  buf.writeUInt32LE(block, 4);
  return buf;
}

/** The bytes write `op` sends for [offset, offset + length): the matching parts of its stamped blocks. */
export function writeData(op: number, offset: number, length: number): Buffer {
  const parts: Buffer[] = [];
  const end = offset + length;
  for (let block = Math.floor(offset / BLOCK); block * BLOCK < end; block++) {
    const from = Math.max(offset, block * BLOCK) - block * BLOCK;
    const to = Math.min(end, (block + 1) * BLOCK) - block * BLOCK;
    parts.push(stampBlock(op, block).subarray(from, to));
  }
  return Buffer.concat(parts);
}
