// Starting a server on a port, with a failure that names the server and the port and says why
// (in use, permission, not an address of this machine): shared by every server of weftd.

import net from 'node:net';

/** "HOST:PORT", an IPv6 address in brackets (as gRPC and URLs want it). */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Runs a server's listen, turning its failure into a message that names the server and the port. */
export async function listen(what: string, host: string, port: number, start: () => Promise<number>): Promise<number> {
  try {
    return await start();
  } catch (error) {
    throw await listenError(what, host, port, error as NodeJS.ErrnoException);
  }
}

async function listenError(what: string, host: string, port: number, error: NodeJS.ErrnoException): Promise<Error> {
  const address = hostPort(host, port);
  // Not every server reports EADDRINUSE (gRPC does not), so ask the port itself.
  if (error.code === 'EADDRINUSE' || (port !== 0 && (await portInUse(host, port)))) {
    return new Error(`${what} port ${address} is already in use`);
  }
  if (error.code === 'EACCES') return new Error(`${what} port ${address}: permission denied (ports below 1024 need root)`);
  if (error.code === 'EADDRNOTAVAIL') return new Error(`cannot listen for ${what} on ${address}: ${host} is not an address of this machine`);
  return new Error(`cannot listen for ${what} on ${address}: ${error.message}`);
}

function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE'));
    probe.listen(port, host, () => probe.close(() => resolve(false)));
  });
}
