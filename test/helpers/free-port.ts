// Free TCP ports for tests that must choose a port themselves (never a fixed one).

import net from 'node:net';

/** A port on 127.0.0.1 that was free a moment ago: bound to 0, then released. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
