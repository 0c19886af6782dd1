// Free TCP ports for tests that must choose a port themselves (never a fixed one).
//
// Chosen below the kernel's ephemeral range: a port bound to 0 and released comes from that range,
// which every outgoing connection and every server listening on port 0 (a weftd's metrics port, a
// test proxy) draws from too, and now and then one of them took it before the test bound it
// ("nbd port ... is already in use", a chaos cluster failing to start in CI). Below the range only
// another choice made here can take it.

import fs from 'node:fs';
import net from 'node:net';

const LOWEST_PORT = 10_000;

/** Where the kernel's ephemeral ports begin (Linux), or the IANA default. */
function ephemeralStart(): number {
  try {
    const first = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > LOWEST_PORT + 1000 ? first : 49_152;
  } catch {
    return 49_152;
  }
}

const HIGHEST_PORT = ephemeralStart() - 1;

/** A port on 127.0.0.1 that was free a moment ago (bound, then released), outside the ephemeral range. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = LOWEST_PORT + Math.floor(Math.random() * (HIGHEST_PORT - LOWEST_PORT + 1));
    if (await canBind(port)) return port;
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}
