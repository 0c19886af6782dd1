// The throttle of a resync, so that client I/O keeps most of its speed while a replica catches up:
// the resync does one step at a time (a batch of runs copied, a window scanned), and rests after a
// step during which clients made requests.

/**
 * The longest rest after one step. A step that took long because it waited (behind client writes
 * that waited in turn for the store, say) would otherwise rest for minutes, the copy kept out all
 * that time.
 */
export const MAX_REST_MS = 5000;

export class ResyncPacer {
  private clientRequests = 0;

  /**
   * busyShare: while clients do I/O, the share of the time a resync may spend working; after each
   * step it rests (1 / busyShare - 1) times as long as the step took. Its requests and the
   * clients' share the CPU, the disks, the network and the replica's connection; resting leaves
   * them all to the clients for that long. When clients are idle it does not rest. 1: never rests.
   */
  constructor(
    private readonly busyShare: number,
    private readonly clock = { now: () => performance.now(), rest: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)) },
  ) {
    if (!(busyShare > 0 && busyShare <= 1)) throw new Error(`resyncBusyShare must be in (0, 1], not ${busyShare}`);
  }

  /** Counts one client request (on the I/O path: a counter, nothing more). */
  clientRequest(): void {
    this.clientRequests++;
  }

  /** Does one step of a resync, then rests if clients made requests meanwhile. */
  async step<T>(work: () => Promise<T>): Promise<T> {
    const requests = this.clientRequests;
    const started = this.clock.now();
    const result = await work();
    if (this.clientRequests !== requests && this.busyShare < 1) {
      await this.clock.rest(Math.min(MAX_REST_MS, (this.clock.now() - started) * (1 / this.busyShare - 1)));
    }
    return result;
  }
}
