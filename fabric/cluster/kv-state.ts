// The embedded store's keys and revision, and how a transaction changes them, with etcd's rules:
// plain state, no I/O, so that live changes and the replay of the log at open go the same way.

import type { Compare, KeyValue, TxnOp, WatchEvent } from './cluster-store';

export class KvState {
  private readonly keys = new Map<string, KeyValue>();

  /** etcd's first revision is 1, an empty store. */
  constructor(public revision = 1, entries: readonly KeyValue[] = []) {
    for (const entry of entries) this.keys.set(entry.key, entry);
  }

  get(key: string): KeyValue | undefined {
    return this.keys.get(key);
  }

  list(prefix: string): KeyValue[] {
    const found = [...this.keys.values()].filter((entry) => entry.key.startsWith(prefix));
    return found.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  entries(): KeyValue[] {
    return [...this.keys.values()];
  }

  holds(compare: Compare): boolean {
    const entry = this.keys.get(compare.key);
    if (compare.target === 'value') {
      // As in etcd: an absent key has no value to compare, so every comparison of it fails.
      return entry !== undefined && test(Buffer.compare(Buffer.from(entry.value), Buffer.from(compare.value)), compare.op);
    }
    const actual = entry?.[compare.target] ?? 0;
    return test(Math.sign(actual - compare.value), compare.op);
  }

  /**
   * Applies ops in order at the next revision and returns what changed (a delete of an absent key
   * changes nothing). The revision moves only when something changed.
   */
  apply(ops: readonly TxnOp[]): WatchEvent[] {
    const revision = this.revision + 1;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      const old = this.keys.get(op.key);
      if (op.type === 'delete') {
        if (!old) continue;
        this.keys.delete(op.key);
        events.push({ type: 'delete', key: op.key, modRevision: revision });
        continue;
      }
      this.keys.set(op.key, {
        key: op.key,
        value: op.value,
        createRevision: old?.createRevision ?? revision,
        modRevision: revision,
        version: (old?.version ?? 0) + 1,
        ...(op.lease === undefined ? {} : { lease: op.lease }),
      });
      events.push({ type: 'put', key: op.key, value: op.value, modRevision: revision });
    }
    if (events.length > 0) this.revision = revision;
    return events;
  }

  /** The keys that live with a lease (all leases when id is undefined). */
  leasedKeys(id?: string): string[] {
    return this.entries()
      .filter((entry) => entry.lease !== undefined && (id === undefined || entry.lease === id))
      .map((entry) => entry.key);
  }
}

function test(sign: number, op: Compare['op']): boolean {
  switch (op) {
    case '=':
      return sign === 0;
    case '!=':
      return sign !== 0;
    case '<':
      return sign < 0;
    case '>':
      return sign > 0;
  }
}
