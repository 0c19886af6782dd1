// What the crash-model test's child and parent share: the operations the child reports, one line
// each (`S <json>` before an operation starts, `A <id>` once it is acknowledged), and the
// contents every write puts into each block, so that a block read back names the write it holds;
// the pools both open; and how to tell whether a control operation is in the catalog.

import * as fs from 'fs';
import * as path from 'path';
import type { EngineOptions, LocalEngine } from '../../fabric/volume/local-engine';

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

/**
 * Whether a control operation is in the engine's catalog: the parent asks it of one the child
 * started before the kill, the child of one that failed while others were running.
 */
export function happened(engine: LocalEngine, op: ControlOp): boolean {
  const volume = (name: string) => engine.listVolumes().find((v) => v.name === name);
  const snapshot = (v: string, name: string) => engine.listSnapshots().some((s) => s.volume === v && s.name === name);
  switch (op.kind) {
    case 'createVolume':
    case 'clone':
      return volume(op.name) !== undefined;
    case 'resize':
      return volume(op.name)!.sizeBytes === op.sizeBytes;
    case 'deleteVolume':
      return volume(op.name) === undefined;
    case 'snapshot':
      return snapshot(op.volume, op.name);
    case 'deleteSnapshot':
      return !snapshot(op.volume, op.name);
    case 'revert':
      return revertedTo(engine, op.volume, op.snapshot);
  }
}

/**
 * Whether the volume reads as the snapshot, as after a revert: an empty head over the snapshot's
 * layer, at the snapshot's size (if the revert did not happen, such a volume holds the same anyway).
 */
function revertedTo(engine: LocalEngine, volume: string, snapshot: string): boolean {
  const catalog = engine.metadata.catalog;
  const record = catalog.volumes.find((v) => v.name === volume)!;
  const frozen = catalog.snapshots.find((s) => s.volume === volume && s.name === snapshot)!;
  const head = catalog.layers.find((l) => l.id === record.head)!;
  return head.parent === frozen.layer && engine.metadata.mapOf(head.id).size === 0 && record.sizeBytes === frozen.sizeBytes;
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
