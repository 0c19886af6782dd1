// Operations in flight, each named by a number that grows with every start: the lowest still
// running, and a wait for every one up to a number to end. A ring of numbers and flags rather than
// a Set: a Set that fills and empties with each request is rebuilt (a new hash table, often on fresh
// pages) every few dozen requests, which perf put at about 0.5 us of every 4 KiB write where one
// sat on the I/O path. The ring holds everything started since the oldest still running; when it
// is full, the ended entries are squeezed out if they are half of it, else it doubles: its size
// follows the most in flight at once, also behind an operation that hangs. Like a Set, it never
// throws on the I/O path: a number started out of order is put in its place, the end of one not in
// flight is ignored.

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

  /** Entries the ring has room for (what it holds in memory). */
  get room(): number {
    return this.seqs.length;
  }

  /** The lowest number started and not ended, if any. */
  get lowest(): number | undefined {
    return this.head < this.tail ? this.seqs[this.head & (this.seqs.length - 1)] : undefined;
  }

  /** seq starts (callers start numbers in increasing order; one that is not is put in its place). */
  start(seq: number): void {
    if (this.tail - this.head === this.seqs.length) this.makeRoom();
    const mask = this.seqs.length - 1;
    let at = this.tail;
    if (!(seq > this.last)) {
      // Out of order: move the higher ones up by one.
      while (at > this.head && this.seqs[(at - 1) & mask] > seq) {
        this.seqs[at & mask] = this.seqs[(at - 1) & mask];
        this.ended[at & mask] = this.ended[(at - 1) & mask];
        at--;
      }
    } else {
      this.last = seq;
    }
    this.seqs[at & mask] = seq;
    this.ended[at & mask] = 0;
    this.tail++;
    this.running++;
  }

  /** seq ends; a number not in flight is ignored. */
  end(seq: number): void {
    const mask = this.seqs.length - 1;
    const at = this.find(seq);
    if (at < 0 || this.ended[at & mask] === 1) return;
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

  /**
   * The ring is full: its entries still running are laid out again from index 0, in a ring of the
   * same size if at least half have ended, else of twice the size. (Ended entries are only kept
   * while an older one runs; dropping them changes nothing but what end() ignores.)
   */
  private makeRoom(): void {
    const mask = this.seqs.length - 1;
    const size = this.running <= this.seqs.length / 2 ? this.seqs.length : this.seqs.length * 2;
    const seqs = new Float64Array(size);
    let i = 0;
    for (let p = this.head; p < this.tail; p++) if (this.ended[p & mask] === 0) seqs[i++] = this.seqs[p & mask];
    this.seqs = seqs;
    this.ended = new Uint8Array(size);
    this.head = 0;
    this.tail = i;
  }
}
