// The reconnecting relay between an attachment's NBD client (nbdfuse or the kernel) and weftd: nbdkit's
// nbd plugin behind its retry filter, so that I/O waits out a weftd restart instead of failing.
//
// Why: neither nbdfuse nor a netlink-configured kernel NBD device reconnects. When weftd stops, every
// request on a direct connection fails from then on, and ext4 on top goes read-only. The relay holds
// the client's connection and, on an error, reopens its connection to weftd and retries the request
// once a second for up to RECONNECT_WINDOW_S seconds. A request in flight when weftd died was not
// acknowledged, so retrying it is safe; an error weftd itself returns (EIO) is retried too, and so
// reaches the client only after the window.
//
// nbdkit (1.32) run in the foreground asks for SIGTERM when its parent exits, so the relay either is
// the child of a process that outlives weftd (nbdfuse) or daemonizes itself (for nbd-client).

import fs from 'node:fs';
import path from 'node:path';
import { readPidFile, startDaemon, stopHelper, type HelperIdentity } from './processes';

/** How long the relay keeps retrying a request while weftd is away; then the request fails (EIO). */
export const RECONNECT_WINDOW_S = 30;

/** Relative to the work dir (nbdkit's cwd when it binds it): a unix socket path may not exceed 107 bytes. */
export const RELAY_SOCKET = 'relay.sock';
const RELAY_PID_FILE = 'relay.pid';
const RELAY_LOG_FILE = 'relay.log';
const STOP_GRACE_MS = 5_000;

/** The nbd plugin behind the retry filter: what every way of running the relay shares. */
function retryingNbdPlugin(nbdUri: string): string[] {
  return ['--filter=retry', 'nbd', `uri=${nbdUri}`, `retries=${RECONNECT_WINDOW_S}`, 'retry-delay=1', 'retry-exponential=no'];
}

/**
 * The relay as nbdfuse's subprocess (`nbdfuse MOUNTPOINT [ CMD ]`): nbdfuse hands it a socket
 * (socket activation), and it lives exactly as long as nbdfuse. Its stderr is nbdfuse's.
 */
export function relaySubprocessArgs(nbdUri: string): string[] {
  return ['[', 'nbdkit', '--exit-with-parent', ...retryingNbdPlugin(nbdUri), ']'];
}

/** The relay as its own daemon, listening on RELAY_SOCKET in the work dir it is started in. */
export function relayDaemonArgs(workDir: string, nbdUri: string): string[] {
  return ['--unix', RELAY_SOCKET, '--pidfile', relayPidFile(workDir), ...retryingNbdPlugin(nbdUri)];
}

function relayPidFile(workDir: string): string {
  return path.join(workDir, RELAY_PID_FILE);
}

/** A daemonized nbdkit runs in "/": it is recognised by its pid file's path on its command line. */
export function relayDaemonIdentity(workDir: string): HelperIdentity {
  return { name: 'nbdkit', marker: relayPidFile(workDir) };
}

/** Starts the relay daemon of one attachment; resolves with its pid once it listens. */
export async function startRelayDaemon(workDir: string, nbdUri: string, readyTimeoutMs: number): Promise<number> {
  fs.rmSync(path.join(workDir, RELAY_SOCKET), { force: true }); // a stale socket makes nbdkit fail: EADDRINUSE
  return startDaemon({
    ...relayDaemonIdentity(workDir),
    args: relayDaemonArgs(workDir, nbdUri),
    cwd: workDir,
    pidFile: relayPidFile(workDir),
    logFile: path.join(workDir, RELAY_LOG_FILE), // until it daemonizes; then it logs to syslog
    readyTimeoutMs,
  });
}

/** Stops the relay daemon of this work dir if it runs, and removes its files. */
export async function stopRelayDaemon(workDir: string): Promise<void> {
  const pid = await readPidFile(relayPidFile(workDir));
  if (pid !== undefined) await stopHelper(pid, relayDaemonIdentity(workDir), STOP_GRACE_MS);
  for (const file of [RELAY_SOCKET, RELAY_PID_FILE, RELAY_LOG_FILE]) fs.rmSync(path.join(workDir, file), { force: true });
}
