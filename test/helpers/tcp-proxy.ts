// A TCP proxy between two parts of a test, which the test can cut like a network partition: while
// cut, nothing crosses it in either direction (existing connections go silent, new ones are accepted
// and held silent), so the parts see timeouts, not refusals, as across a real partition.
//
// Healing resets every connection that lived through the cut instead of delivering what it held:
// the peers have given up on those requests by then, and bytes sent before the cut arriving long
// after it are not what the test means to inject. New connections flow again at once.

import net from 'node:net';

interface Link {
  client: net.Socket;
  upstream?: net.Socket;
  /** Lived through a cut: reset at heal. */
  silenced: boolean;
}

export class TcpProxy {
  private readonly links = new Set<Link>();
  private cutNow = false;

  private constructor(private readonly server: net.Server, private readonly target: { host: string; port: number }) {}

  /** Listens on host:port (port 0: any free port) and forwards each connection to target. */
  static async start(listen: { host: string; port: number }, target: { host: string; port: number }): Promise<TcpProxy> {
    const server = net.createServer();
    const proxy = new TcpProxy(server, target);
    server.on('connection', (socket) => proxy.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get isCut(): boolean {
    return this.cutNow;
  }

  /** From now on nothing crosses, until heal(). */
  cut(): void {
    this.cutNow = true;
    for (const link of this.links) this.silence(link);
  }

  /** Resets every connection open now (both ends see it close); while cut, new ones are held until heal(). */
  reset(): void {
    for (const link of [...this.links]) this.drop(link);
  }

  /** Resets the connections that lived through the cut; new ones flow again. */
  heal(): void {
    this.cutNow = false;
    for (const link of this.links) if (link.silenced) this.drop(link);
  }

  async close(): Promise<void> {
    for (const link of this.links) this.drop(link);
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: net.Socket): void {
    const link: Link = { client, silenced: false };
    this.links.add(link);
    client.on('error', () => this.drop(link));
    client.on('close', () => this.drop(link));
    if (this.cutNow) {
      this.silence(link); // held until heal, which resets it
      return;
    }
    const upstream = net.connect({ host: this.target.host, port: this.target.port, noDelay: true });
    link.upstream = upstream;
    upstream.on('error', () => this.drop(link));
    upstream.on('close', () => this.drop(link));
    forward(client, upstream, link);
    forward(upstream, client, link);
  }

  /** Stops reading both sides: what they send stays in the kernel's buffers, undelivered. */
  private silence(link: Link): void {
    link.silenced = true;
    link.client.pause();
    link.upstream?.pause();
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }
}

/** Copies from one socket to the other with backpressure; a silenced link stays paused. */
function forward(from: net.Socket, to: net.Socket, link: Link): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => {
    if (!link.silenced) from.resume();
  });
  from.on('end', () => to.end());
}
