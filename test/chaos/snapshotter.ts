// The chaos run's snapshots: one every second or few, through a random node that runs, while the
// clients write and the faults strike; some are cut short by them (their primary killed or cut off
// as it takes them). Once every copy is back in sync the copies must agree (check): each holds the
// same snapshots, every acknowledged one among them, and the primary lists exactly those. A
// snapshot that was not acknowledged may be there, on every copy (cut short once every copy had it).

import { Prng } from '../helpers/prng';
import type { ChaosCluster, ChaosNode } from './cluster';

/** How long a check tries to take its own snapshot (it settles any left cut short) while the volume is settling. */
const SETTLE_TIMEOUT_MS = 30_000;
/** The acknowledged snapshots a check keeps; it deletes the older ones, so that the chain stays short. */
const KEPT = 2;

export class Snapshotter {
  private stopped = false;
  private paused = false;
  private loop: Promise<void> | undefined;
  private attempt: Promise<unknown> = Promise.resolve();
  private readonly prng: Prng;
  private taken = 0;
  /** Acknowledged and not deleted since, oldest first. */
  private readonly acked: string[] = [];
  /** Snapshots acknowledged, and attempts that failed (cut short, or refused), with why (numbers and names left out). */
  made = 0;
  failed = 0;
  readonly failures = new Map<string, number>();

  constructor(private readonly cluster: ChaosCluster, private readonly volume: string, seed: number) {
    this.prng = new Prng(seed * 1000 + 999);
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops taking snapshots; resolves once none is under way. */
  async pause(): Promise<void> {
    this.paused = true;
    await this.attempt;
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /**
   * With every copy in sync and the snapshotter paused: takes a snapshot through the primary (the
   * primary first settles one left cut short), then compares what each copy holds. The violation
   * found, if any; the older acknowledged snapshots are deleted after.
   */
  async check(primary: ChaosNode): Promise<string | undefined> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    // A new name at each try: one that failed may have been taken all the same (kept, unacknowledged).
    for (;;) {
      const name = `k${++this.taken}`;
      try {
        await primary.api.createSnapshot(this.volume, name);
        this.acknowledge(name);
        break;
      } catch (err) {
        this.fail(err as Error);
        if (Date.now() > deadline) return `the check's snapshots through the primary ${primary.id} failed for ${SETTLE_TIMEOUT_MS} ms, the last one (${name}): ${(err as Error).message}`;
        await sleep(500);
      }
    }
    const held = await Promise.all(this.cluster.nodes.map(async (node) => [node.id, (await node.api.copySnapshots(this.volume)).map((s) => s.name).sort()] as const));
    const [first, ...rest] = held;
    const differs = rest.find(([, names]) => names.join() !== first[1].join());
    if (differs) return `the copies disagree on the snapshots: ${held.map(([id, names]) => `${id} holds [${names.join(', ')}]`).join('; ')}`;
    const missing = this.acked.filter((s) => !first[1].includes(s));
    if (missing.length > 0) return `acknowledged snapshots ${missing.join(', ')} are on no copy (the copies hold [${first[1].join(', ')}])`;
    const listed = (await primary.api.listSnapshots(this.volume)).map((s) => s.name).sort();
    if (listed.join() !== first[1].join()) return `the primary ${primary.id} lists [${listed.join(', ')}], its copies hold [${first[1].join(', ')}]`;
    // Every snapshot but the last acknowledged ones, those cut short and kept too.
    for (const old of first[1].filter((s) => !this.acked.slice(-KEPT).includes(s))) {
      await primary.api.deleteSnapshot(this.volume, old);
      this.acked.splice(this.acked.indexOf(old), this.acked.includes(old) ? 1 : 0);
    }
    return undefined;
  }

  private fail(err: Error): void {
    this.failed++;
    const why = err.message.replace(/\b[ck]\d+\b/g, 'NAME').replace(/\d+(\.\d+)?/g, 'N');
    this.failures.set(why, (this.failures.get(why) ?? 0) + 1);
  }

  private acknowledge(name: string): void {
    this.acked.push(name);
    this.made++;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await sleep(this.prng.int(1000, 3000));
      const nodes = this.cluster.nodes.filter((n) => n.up);
      if (this.paused || this.stopped || nodes.length === 0) continue;
      const name = `c${++this.taken}`;
      const attempt = this.prng.pick(nodes).api.createSnapshot(this.volume, name).then(
        () => this.acknowledge(name),
        (err: Error) => this.fail(err),
      );
      this.attempt = attempt;
      await attempt;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
