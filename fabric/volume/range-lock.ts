// Orders overlapping I/O on one volume: reads share a range, writes own it. A write that lands in
// place must not race another write (the checksum would not match the bytes) or a read (torn data).

interface Holder {
  start: number;
  end: number; // exclusive
  exclusive: boolean;
  released: boolean;
  /** Resolvers of requests waiting for this holder; created only when someone waits. */
  waiters: (() => void)[] | undefined;
}

export type Release = () => void;

export class RangeLock {
  private holders: Holder[] = [];

  /**
   * Acquires [start, end). Returns a release function at once when nothing conflicts
   * (the common case, with no promise allocated), else a promise of one.
   */
  acquire(start: number, end: number, exclusive: boolean): Release | Promise<Release> {
    const conflicts: Holder[] = [];
    for (const h of this.holders) {
      if (h.start < end && start < h.end && (exclusive || h.exclusive)) conflicts.push(h);
    }
    const holder: Holder = { start, end, exclusive, released: false, waiters: undefined };
    this.holders.push(holder);
    const release = () => this.release(holder);
    if (conflicts.length === 0) return release;
    return Promise.all(conflicts.map((h) => new Promise<void>((resolve) => (h.waiters ??= []).push(resolve)))).then(
      () => release,
    );
  }

  /** Ranges held or waited for. */
  get size(): number {
    return this.holders.length;
  }

  private release(holder: Holder): void {
    if (holder.released) return;
    holder.released = true;
    const i = this.holders.indexOf(holder);
    if (i >= 0) this.holders.splice(i, 1);
    if (holder.waiters) for (const wake of holder.waiters) wake();
  }
}
