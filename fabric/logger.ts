// Structured logs: one JSON object per line on stdout (pino), so that journald, kubectl logs and
// tests can all read them. Every line carries the node id.

import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

export type { Logger };

export function createLogger(level: LogLevel, nodeId: string): Logger {
  // Synchronous: weftd logs events, not requests, and an asynchronous stdout must be flushed at exit,
  // which sonic-boom retries forever when the reader is gone (EPIPE): weftd would never exit.
  const stdout = pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level,
      base: { nodeId, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stdout,
  );
}
