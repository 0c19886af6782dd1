// The reconnecting relay between an attachment's NBD client (nbdfuse or the kernel) and weftd: nbdkit's
// nbd plugin behind its retry filter, so that I/O waits out a weftd restart instead of failing.
//
// Why: neither nbdfuse nor a netlink-configured kernel NBD device reconnects. When weftd stops, every
// request through a direct connection fails from then on, and ext4 on top goes read-only. The relay
// holds the client's connection (a unix socket in the work dir) and, on an error, reopens its
// connection to weftd and retries the request once a second, for up to RECONNECT_WINDOW_S seconds.
// Requests that were in flight when weftd died were not acknowledged, so retrying them is safe.

import fs from 'node:fs';
import path from 'node:path';
import { readPidFile, startDaemon, stopHelper, type HelperIdentity } from './processes';

/** How long the relay keeps retrying a request while weftd is away; then the request fails (EIO). */
export const RECONNECT_WINDOW_S = 60;

/** Relative to the work dir (the relay's cwd): a unix socket path may not exceed 107 bytes. */
export const RELAY_SOCKET = 'relay.sock';
const RELAY_PID_FILE = 'relay.pid';
const RELAY_LOG_FILE = 'relay.log';
const STOP_GRACE_MS = 5_000;

/** nbdkit's arguments: foreground (we detach it ourselves), our socket, the retrying nbd plugin. */
export function relayArgs(nbdUri: string): string[] {
  return [
    '--foreground', '--unix', RELAY_SOCKET, '--pidfile', RELAY_PID_FILE,
    '--filter=retry', 'nbd', `uri=${nbdUri}`,
    `retries=${RECONNECT_WINDOW_S}`, 'retry-delay=1', 'retry-exponential=no',
  ];
}

export function relayIdentity(workDir: string): HelperIdentity {
  return { name: 'nbdkit', cwd: workDir };
}

/** Starts the relay for one attachment; resolves with its pid once it listens. */
export async function startRelay(workDir: string, nbdUri: string, readyTimeoutMs: number): Promise<number> {
  fs.rmSync(path.join(workDir, RELAY_SOCKET), { force: true }); // a stale socket makes nbdkit fail: EADDRINUSE
  return startDaemon({
    ...relayIdentity(workDir),
    args: relayArgs(nbdUri),
    pidFile: path.join(workDir, RELAY_PID_FILE),
    logFile: path.join(workDir, RELAY_LOG_FILE),
    readyTimeoutMs,
  });
}

/** Stops the relay of this work dir if it runs, and removes its files. */
export async function stopRelay(workDir: string): Promise<void> {
  const pid = await readPidFile(path.join(workDir, RELAY_PID_FILE));
  if (pid !== undefined) await stopHelper(pid, relayIdentity(workDir), STOP_GRACE_MS);
  for (const file of [RELAY_SOCKET, RELAY_PID_FILE, RELAY_LOG_FILE]) fs.rmSync(path.join(workDir, file), { force: true });
}
