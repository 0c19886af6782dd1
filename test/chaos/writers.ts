// The chaos run's clients: each writes stamped 4 KiB blocks with FUA through one node's NBD server,
// a few requests in flight, and records every outcome in the shared History. Client c owns the
// blocks b with b % clients === c, and never has two writes of one block in flight. A client whose
// write fails (its node killed, the request failed or went unanswered) moves on to the next node.

import { NbdClient } from '../../fabric/nbd/client';
import { Prng } from '../helpers/prng';
import type { ChaosCluster } from './cluster';
import { BLOCK_BYTES, stampedBlock, type History } from './history';

/** Above the forwarders' 30 s of retries: a request the node still works on is not given up early. */
const REQUEST_TIMEOUT_MS = 45_000;
const RECONNECT_PAUSE_MS = 200;

export interface WriterOptions {
  clients: number;
  /** Blocks written, from offset 0. */
  blocks: number;
  /** Writes in flight per client. */
  depth: number;
  volume: string;
  seed: number;
}

export class Writers {
  private paused = false;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly idle = new Set<() => void>();
  private inFlight = 0;
  /** When the last write was acknowledged (ms since the epoch). */
  lastAckAt = 0;

  constructor(private readonly cluster: ChaosCluster, readonly history: History, private readonly options: WriterOptions) {}

  start(): void {
    for (let c = 0; c < this.options.clients; c++) this.loops.push(this.client(c));
  }

  /** Stops issuing writes; resolves once none is in flight, so the history can be checked. */
  async pause(): Promise<void> {
    this.paused = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /**
   * One client: connects to its node (or the next one up) and runs `depth` write loops on it until a
   * write fails; the other loops end with their current write, then the next node is tried. A block
   * whose write failed is never written again: that write may still land at any time (a node may
   * hold it in its retries), and the checker must be able to tell it from a later one.
   */
  private async client(c: number): Promise<void> {
    const prng = new Prng(this.options.seed * 1000 + c);
    const owned = Array.from({ length: Math.ceil((this.options.blocks - c) / this.options.clients) }, (_, i) => c + i * this.options.clients);
    const writable = new Set(owned);
    const busy = new Set<number>();
    let seq = 0;
    let nodeIndex = c;
    while (!this.stopped && writable.size > this.options.depth) {
      const node = this.cluster.nodes[nodeIndex++ % this.cluster.nodes.length];
      let nbd: NbdClient | undefined;
      try {
        if (!node.up) continue;
        nbd = await NbdClient.connect({ host: '127.0.0.1', port: node.weftd.nbdPort, exportName: this.options.volume, timeoutMs: REQUEST_TIMEOUT_MS });
        const conn = nbd;
        let failed = false;
        const loop = async () => {
          while (!this.stopped && !failed && writable.size > this.options.depth) {
            if (this.paused) {
              await sleep(50);
              continue;
            }
            let block = prng.pick(owned);
            while (busy.has(block) || !writable.has(block)) block = prng.pick(owned);
            busy.add(block);
            const acked = await this.write(conn, { client: c, seq: ++seq, block });
            busy.delete(block);
            if (!acked) {
              writable.delete(block);
              failed = true;
            }
          }
        };
        await Promise.all(Array.from({ length: this.options.depth }, loop));
      } catch {
        // The node did not take the connection: the next one.
      } finally {
        nbd?.close();
        await sleep(RECONNECT_PAUSE_MS);
      }
    }
  }

  /** One write, its outcome recorded: acknowledged or not. */
  private async write(conn: NbdClient, stamp: { client: number; seq: number; block: number }): Promise<boolean> {
    const record = this.history.issue(stamp);
    this.inFlight++;
    let acked = false;
    try {
      await conn.write(stamp.block * BLOCK_BYTES, stampedBlock(stamp), true);
      acked = true;
      this.lastAckAt = Date.now();
    } catch {
      // Failed: it may or may not have landed, which is what the history records.
    }
    this.history.settle(record, acked);
    if (--this.inFlight === 0) {
      for (const resolve of this.idle) resolve();
      this.idle.clear();
    }
    return acked;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
