// Operations in flight, each named by a number that grows with every start: the lowest still
// running, and a wait for every one up to a number to end. A ring of numbers and flags rather than
// a Set: a Set that fills and empties with each request is rebuilt (a new hash table, often on fresh
// pages) every few dozen requests, which perf put at about 0.5 us of every 4 KiB write where one
// sat on the I/O path. The ring grows to the most ever in flight at once and stays that size.

interface Waiter {
  upTo: number;
  resolve: () => void;
}

export class InFlightWindow {
  private seqs = new Float64Array(64);
  private ended = new Uint8Array(64);
  /** Positions (not indexes: index = position & mask) of the oldest entry and one past the newest. */
  private head = 0;
  private tail = 0;
  private running = 0;
  private last = Number.NEGATIVE_INFINITY;
  private waiters: Waiter[] = [];

  /** How many have started and not ended. */
  get size(): number {
    return this.running;
  }

  /** The lowest number started and not ended, if any. */
  get lowest(): number | undefined {
    return this.head < this.tail ? this.seqs[this.head & (this.seqs.length - 1)] : undefined;
  }

  /** seq starts; it must be higher than every number started before. */
  start(seq: number): void {
    if (!(seq > this.last)) throw new Error(`in-flight window: ${seq} started after ${this.last}`);
    if (this.tail - this.head === this.seqs.length) this.grow();
    const at = this.tail & (this.seqs.length - 1);
    this.seqs[at] = seq;
    this.ended[at] = 0;
    this.tail++;
    this.running++;
    this.last = seq;
  }

  /** seq, started and not yet ended, ends. */
  end(seq: number): void {
    const mask = this.seqs.length - 1;
    const at = this.find(seq);
    if (at < 0 || this.ended[at & mask] === 1) throw new Error(`in-flight window: ${seq} is not in flight`);
    this.ended[at & mask] = 1;
    this.running--;
    while (this.head < this.tail && this.ended[this.head & mask] === 1) this.head++;
    if (this.waiters.length > 0 && at < this.head) this.wake();
  }

  /** Resolves once every number up to seq that has started has ended (at once if none is running). */
  endedUpTo(seq: number): Promise<void> {
    const lowest = this.lowest;
    if (lowest === undefined || lowest > seq) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ upTo: seq, resolve }));
  }

  /** The position of seq between head and tail (numbers grow with position), or -1. */
  private find(seq: number): number {
    const mask = this.seqs.length - 1;
    let lo = this.head;
    let hi = this.tail - 1;
    while (lo <= hi) {
      const mid = lo + ((hi - lo) >> 1);
      const value = this.seqs[mid & mask];
      if (value === seq) return mid;
      if (value < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private wake(): void {
    const lowest = this.lowest;
    const done = this.waiters.filter((w) => lowest === undefined || lowest > w.upTo);
    if (done.length === 0) return;
    this.waiters = this.waiters.filter((w) => !done.includes(w));
    for (const w of done) w.resolve();
  }

  /** Twice the room, the entries kept in order from index 0. */
  private grow(): void {
    const size = this.seqs.length;
    const seqs = new Float64Array(size * 2);
    const ended = new Uint8Array(size * 2);
    for (let p = this.head, i = 0; p < this.tail; p++, i++) {
      seqs[i] = this.seqs[p & (size - 1)];
      ended[i] = this.ended[p & (size - 1)];
    }
    this.tail -= this.head;
    this.head = 0;
    this.seqs = seqs;
    this.ended = ended;
  }
}
