// The history checker's record and rule: clients write stamped 4 KiB blocks, each block written by
// one client only and never by two requests at once, so the writes of a block are totally ordered
// (each issued after the one before it ended). Every write ends acknowledged or failed; a failed
// write (error, broken connection, timeout) may or may not have landed, at any time: a node may
// still hold it in its retries, so the writers never write that block again (writers.ts).
//
// The rule, checked while no write is in flight: a block reads back as its last acknowledged write,
// or as a write issued after that one (all of which failed, so each may have landed). A block with
// no acknowledged write reads as zeroes or as any of its writes. Anything else is a lost write.

export const BLOCK_BYTES = 4096;
const STAMP_BYTES = 16;
const MAGIC = 0x57454654; // "WEFT"

export interface Stamp {
  client: number;
  seq: number;
  block: number;
}

/** A block's bytes: the stamp repeated over all 4 KiB, so a torn or mixed block does not pass as one. */
export function stampedBlock(stamp: Stamp): Buffer {
  const one = Buffer.alloc(STAMP_BYTES);
  one.writeUInt32BE(MAGIC, 0);
  one.writeUInt32BE(stamp.client, 4);
  one.writeUInt32BE(stamp.seq, 8);
  one.writeUInt32BE(stamp.block, 12);
  return Buffer.alloc(BLOCK_BYTES, one);
}

/** The stamp a block holds, null for zeroes, or a description of what else it holds. */
export function readStamp(data: Buffer): Stamp | null | string {
  if (data.every((byte) => byte === 0)) return null;
  const first = data.subarray(0, STAMP_BYTES);
  for (let at = STAMP_BYTES; at < data.length; at += STAMP_BYTES) {
    if (!data.subarray(at, at + STAMP_BYTES).equals(first)) return `not one stamp: bytes ${first.toString('hex')} at 0, ${data.subarray(at, at + STAMP_BYTES).toString('hex')} at ${at}`;
  }
  if (first.readUInt32BE(0) !== MAGIC) return `no stamp: ${first.toString('hex')}`;
  return { client: first.readUInt32BE(4), seq: first.readUInt32BE(8), block: first.readUInt32BE(12) };
}

interface Write {
  seq: number;
  client: number;
  outcome: 'pending' | 'acked' | 'failed';
}

export interface Violation {
  block: number;
  found: string;
  history: string;
}

export class History {
  private readonly writes = new Map<number, Write[]>();
  acked = 0;
  failed = 0;

  /** Records a write as issued; call settle() once it ends. */
  issue(stamp: Stamp): Write {
    const list = this.writes.get(stamp.block) ?? [];
    const last = list[list.length - 1];
    if (last?.outcome === 'pending') throw new Error(`block ${stamp.block}: two writes in flight at once`);
    const write: Write = { seq: stamp.seq, client: stamp.client, outcome: 'pending' };
    list.push(write);
    this.writes.set(stamp.block, list);
    return write;
  }

  settle(write: Write, acked: boolean): void {
    write.outcome = acked ? 'acked' : 'failed';
    if (acked) this.acked++;
    else this.failed++;
  }

  /** Blocks written so far, in ascending order. */
  blocks(): number[] {
    return [...this.writes.keys()].sort((a, b) => a - b);
  }

  /** Checks what block holds against its history; undefined when it is allowed. */
  check(block: number, data: Buffer): Violation | undefined {
    const list = this.writes.get(block) ?? [];
    if (list.some((w) => w.outcome === 'pending')) throw new Error(`block ${block}: checked with a write in flight`);
    const lastAcked = list.map((w) => w.outcome).lastIndexOf('acked');
    const allowed = list.slice(Math.max(0, lastAcked));
    const found = readStamp(data);
    const ok =
      found === null
        ? lastAcked < 0
        : typeof found !== 'string' && found.block === block && allowed.some((w) => w.client === found.client && w.seq === found.seq);
    if (ok) return undefined;
    const shown = found === null ? 'zeroes' : typeof found === 'string' ? found : `client ${found.client} seq ${found.seq} block ${found.block}`;
    return { block, found: shown, history: list.map((w) => `c${w.client}#${w.seq}:${w.outcome}`).join(' ') };
  }
}
