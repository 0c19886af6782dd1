// Keeps warnings that may come in floods (one connection's bad input or failing device, the server's
// refused connections) from flooding the log: the first few of each interval are logged in full,
// the rest only counted, in one summary line per interval.

import type pino from 'pino';

const LOGGED_PER_INTERVAL = 5;
const INTERVAL_MS = 60_000;

export class WarningLimiter {
  private logged = 0;
  private suppressed = 0;
  private timer?: NodeJS.Timeout;
  private readonly endInterval = (): void => {
    this.timer = undefined;
    if (this.suppressed > 0) {
      this.log.warn({ suppressed: this.suppressed }, `NBD: ${this.suppressed} more warnings about ${this.about} were not logged`);
    }
    this.logged = 0;
    this.suppressed = 0;
  };

  /** about: what the warnings are about, for the summary line. */
  constructor(
    private readonly log: pino.Logger,
    private readonly about = "this client's requests",
  ) {}

  warn(fields: object, message: string): void {
    if (this.logged < LOGGED_PER_INTERVAL) {
      this.logged++;
      this.log.warn(fields, message);
    } else {
      this.suppressed++;
    }
    this.timer ??= setTimeout(this.endInterval, INTERVAL_MS).unref();
  }

  /** The connection has ended: reports what was not logged, and stops the timer. */
  close(): void {
    clearTimeout(this.timer);
    this.endInterval();
  }
}
