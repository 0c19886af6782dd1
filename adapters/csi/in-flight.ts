// One operation at a time per volume or snapshot name. A CO that lost track (after a restart) may
// send a second call for the same object while the first runs; the spec lets the plugin answer
// ABORTED, and the CO retries once the first is done.

import { aborted } from './errors';

export class InFlight {
  private readonly keys = new Set<string>();

  async run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    if (this.keys.has(key)) throw aborted(`an operation on ${key} is already in progress; retry when it is done`);
    this.keys.add(key);
    try {
      return await operation();
    } finally {
      this.keys.delete(key);
    }
  }
}
