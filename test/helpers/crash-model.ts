// The parent's side of the crash-model test: from the operations a child reported (crash-ops.ts),
// the set of contents each 4 KiB block of each volume and snapshot may hold after a crash. An
// operation that failed is not acknowledged: a failed write, trim or zeroes may have left old or new
// content in each block; a failed flush makes nothing durable; a failed control operation must have
// left nothing behind. No operation may fail outside a period of injected faults.

import { BLOCK, ControlOp, IoOp, isIo, Op, stampBlock } from './crash-ops';

/** One content a block may hold, and the operation that wrote it (0: none since the last check). */
interface Candidate {
  op: number;
  data: Buffer;
}

const ZERO_BLOCK = Buffer.alloc(BLOCK);

export class CrashModel {
  /**
   * Per export (volume, or snapshot as VOL@SNAP), per block: the contents it may hold, oldest
   * first; a flush that covers a write drops the ones before that write's.
   */
  readonly exports = new Map<string, Candidate[][]>();
  /** Per volume: the class of the pool it lives in. */
  readonly classes = new Map<string, string>();
  /** Operations started and not yet acknowledged or failed, and whether faults were injected meanwhile. */
  private readonly started = new Map<number, { op: Op; duringFaults: boolean }>();
  /** Whether the child is in a period of injected faults. */
  private faults = false;
  /** Operations that failed (under injected faults), for the report. */
  failedOps = 0;
  /** Writes acknowledged and not yet made durable by an acknowledged flush. */
  private ackedWrites: IoOp[] = [];
  /** Per flush in flight: the writes acknowledged before it started, which it makes durable. */
  private readonly flushCovers = new Map<number, IoOp[]>();
  /**
   * Per control operation started and not acknowledged (after a crash it may or may not have
   * happened; several run at once, on different volumes and snapshots): the writes acknowledged
   * before it started, which its commit makes durable.
   */
  private readonly controlCovers = new Map<number, IoOp[]>();

  /** Applies one line of the child's report; ignores anything else. Throws on a broken rule. */
  onLine(line: string): void {
    if (line.startsWith('S ')) this.onStart(JSON.parse(line.slice(2)) as Op);
    else if (line.startsWith('A ')) this.onAck(Number(line.slice(2)));
    else if (line.startsWith('F ')) this.onFailure(line.slice(2));
    else if (line.startsWith('P ')) this.faults = line === 'P off' ? false : true;
    else if (line.startsWith('X ')) throw new Error(line.slice(2));
  }

  private onStart(op: Op): void {
    this.started.set(op.id, { op, duringFaults: this.faults });
    if (isIo(op)) this.addCandidates(op);
    else if (op.kind === 'flush') this.flushCovers.set(op.id, [...this.ackedWrites]);
    else this.controlCovers.set(op.id, [...this.ackedWrites]);
  }

  private onAck(id: number): void {
    const { op } = this.started.get(id)!;
    this.started.delete(id);
    if (isIo(op)) {
      if (op.fua) this.makeDurable([op]);
      else this.ackedWrites.push(op);
    } else if (op.kind === 'flush') {
      this.makeDurable(this.flushCovers.get(id)!);
      this.flushCovers.delete(id);
    } else {
      // A control operation commits with a flush of every write completed before it; a snapshot
      // then holds them as durable too.
      this.makeDurable(this.controlCovers.get(id)!);
      this.controlCovers.delete(id);
      this.apply(op);
    }
  }

  /** `F id "message"`: the operation failed; it stays unacknowledged. */
  private onFailure(rest: string): void {
    const space = rest.indexOf(' ');
    const id = Number(rest.slice(0, space));
    const { op, duringFaults } = this.started.get(id)!;
    this.started.delete(id);
    const message = JSON.parse(rest.slice(space + 1)) as string;
    if (!duringFaults) throw new Error(`${JSON.stringify(op)} failed with no fault injected: ${message}`);
    this.failedOps++;
    if (op.kind === 'flush') this.flushCovers.delete(id);
    // Its cancel could not be written: after a crash it may be found done, as if still in flight
    // (until then nothing else can reach the journal file without the cancel before it).
    else if (!isIo(op) && message.includes('may be found done')) this.started.set(id, { op, duringFaults });
    else if (!isIo(op)) this.controlCovers.delete(id); // it must not have happened
  }

  /**
   * A write started: each block it touches may now also hold its content. Where it covers part of
   * a block, that part is laid over each content the block may hold: the last one is not always
   * what the engine holds (a snapshot taken while writes were in flight holds some of them or not).
   */
  private addCandidates(op: IoOp): void {
    const blocks = this.exports.get(op.volume)!;
    const end = op.offset + op.length;
    for (let block = Math.floor(op.offset / BLOCK); block * BLOCK < end; block++) {
      const from = Math.max(op.offset, block * BLOCK) - block * BLOCK;
      const to = Math.min(end, (block + 1) * BLOCK) - block * BLOCK;
      const source = op.kind === 'write' ? stampBlock(op.id, block) : ZERO_BLOCK;
      if (to - from === BLOCK) {
        blocks[block].push({ op: op.id, data: source });
        continue;
      }
      for (const base of [...blocks[block]]) {
        const data = Buffer.from(base.data);
        source.copy(data, from, from, to);
        if (!blocks[block].some((c) => c.op === op.id && c.data.equals(data))) blocks[block].push({ op: op.id, data });
      }
    }
  }

  /**
   * These acknowledged writes are durable: their blocks no longer may hold anything older. (A
   * volume deleted or reverted since holds none of them, and may have become smaller.)
   */
  private makeDurable(ops: IoOp[]): void {
    for (const op of ops) {
      const blocks = this.exports.get(op.volume) ?? [];
      const end = Math.min(op.offset + op.length, blocks.length * BLOCK);
      for (let block = Math.floor(op.offset / BLOCK); block * BLOCK < end; block++) {
        const at = blocks[block].findIndex((c) => c.op === op.id);
        if (at > 0) blocks[block].splice(0, at);
      }
    }
    this.ackedWrites = this.ackedWrites.filter((w) => !ops.includes(w));
  }

  /** The control operations started and not acknowledged, in the order they started. */
  pendingControls(): ControlOp[] {
    return [...this.controlCovers.keys()].map((id) => this.started.get(id)!.op as ControlOp);
  }

  /** Applies a control operation that happened. */
  apply(op: ControlOp): void {
    switch (op.kind) {
      case 'createVolume':
        this.exports.set(op.name, grown([], op.sizeBytes));
        this.classes.set(op.name, op.class);
        return;
      case 'resize':
        this.exports.set(op.name, grown(this.exports.get(op.name)!, op.sizeBytes));
        return;
      case 'deleteVolume':
        this.exports.delete(op.name);
        this.classes.delete(op.name);
        this.forgetWrites(op.name);
        return;
      case 'snapshot':
        this.exports.set(`${op.volume}@${op.name}`, grown(this.exports.get(op.volume)!, 0));
        return;
      case 'deleteSnapshot':
        this.exports.delete(`${op.volume}@${op.name}`);
        return;
      case 'clone':
        this.exports.set(op.name, grown(this.exports.get(`${op.volume}@${op.snapshot}`)!, op.sizeBytes));
        this.classes.set(op.name, op.class);
        return;
      case 'revert':
        this.exports.set(op.volume, grown(this.exports.get(`${op.volume}@${op.snapshot}`)!, 0));
        this.forgetWrites(op.volume);
    }
  }

  /**
   * The volume's content was replaced (reverted) or dropped: writes to it acknowledged before, not
   * yet durable, no longer say anything about it when a later flush makes them durable.
   */
  private forgetWrites(volume: string): void {
    const others = (ops: IoOp[]) => ops.filter((w) => w.volume !== volume);
    this.ackedWrites = others(this.ackedWrites);
    for (const [id, ops] of this.flushCovers) this.flushCovers.set(id, others(ops));
    for (const [id, ops] of this.controlCovers) this.controlCovers.set(id, others(ops));
  }

  /** After recovery was checked: what was read back is all a block may hold, and nothing is in flight. */
  reset(contents: Map<string, Buffer>): void {
    this.exports.clear();
    for (const [name, data] of contents) {
      const blocks = Array.from({ length: data.length / BLOCK }, (_, b) => [{ op: 0, data: data.subarray(b * BLOCK, (b + 1) * BLOCK) }]);
      this.exports.set(name, blocks);
    }
    this.started.clear();
    this.ackedWrites = [];
    this.flushCovers.clear();
    this.controlCovers.clear();
  }

  /** Why block `block` of an export may not read as data, or undefined if it may. */
  disallowed(exportName: string, block: number, data: Buffer): string | undefined {
    const allowed = this.exports.get(exportName)![block];
    if (allowed.some((c) => c.data.equals(data))) return undefined;
    const holds = data.equals(ZERO_BLOCK) ? 'zeroes' : `op ${data.readUInt32LE(0)} block ${data.readUInt32LE(4)} (first bytes)`;
    return `${exportName} block ${block} holds ${holds}; allowed: contents of ops ${allowed.map((c) => c.op).join(', ')}`;
  }
}

/** A copy of the blocks of an export, grown with zeroes to sizeBytes if that is larger. */
function grown(blocks: Candidate[][], sizeBytes: number): Candidate[][] {
  const copy = blocks.map((candidates) => [...candidates]);
  while (copy.length * BLOCK < sizeBytes) copy.push([{ op: 0, data: ZERO_BLOCK }]);
  return copy;
}
