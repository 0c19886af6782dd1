// One client connection from accept to close: the handshake (with a wall-clock time limit and a
// cap on unread input), then the transmission phase. `done` resolves once the socket and any export are closed.

import type net from 'node:net';
import type pino from 'pino';
import type { ExportProvider } from './export-provider';
import { ByteReader, ConnectionEnded } from './byte-reader';
import { MAX_HANDSHAKE_INPUT_BYTES, negotiate, type Negotiated } from './handshake';
import type { NodeInFlightBudget } from './inflight-budget';
import { Transmission } from './transmission';

const KEEPALIVE_DELAY_MS = 60_000;

export interface ConnectionOptions {
  provider: ExportProvider;
  logger: pino.Logger;
  maxRequestBytes: number;
  /** A client that has not finished the handshake this long after connecting is dropped. */
  handshakeTimeoutMs: number;
  /** Bytes of requests and replies one connection may hold before it stops reading. */
  maxConnectionInFlightBytes: number;
  /** See NbdServerOptions.drainTimeoutMs. */
  drainTimeoutMs: number;
  budget: NodeInFlightBudget;
}

export class Connection {
  readonly done: Promise<void>;
  private readonly log: pino.Logger;
  private readonly reader: ByteReader;
  private handshakeDeadline?: NodeJS.Timeout;
  private transmission?: Transmission;
  private shuttingDown = false;
  private resolveDone!: () => void;
  private readonly onHandshakeData = (chunk: Buffer): void => this.reader.push(chunk);
  private readonly onHandshakeEnd = (): void => this.reader.end('the client closed the connection');
  private readonly onHandshakeTimeout = (): void => {
    this.log.warn('NBD handshake: timed out; disconnecting');
    this.socket.destroy();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ConnectionOptions,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.log = options.logger.child({ peer: `${socket.remoteAddress}:${socket.remotePort}` });
    this.reader = new ByteReader(socket, MAX_HANDSHAKE_INPUT_BYTES);
  }

  start(): void {
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    this.socket.on('error', (err) => this.log.warn({ err }, 'NBD: connection error'));
    this.socket.on('data', this.onHandshakeData);
    this.socket.on('end', this.onHandshakeEnd);
    this.socket.on('close', this.onHandshakeEnd);
    // A deadline, not an idle timeout: a client that trickles bytes or stops reading must not stay.
    this.handshakeDeadline = setTimeout(this.onHandshakeTimeout, this.options.handshakeTimeoutMs);
    negotiate({
      provider: this.options.provider,
      peer: { address: this.socket.remoteAddress ?? '', port: this.socket.remotePort ?? 0 },
      maxRequestBytes: this.options.maxRequestBytes,
      reader: this.reader,
      write: (data) => this.socket.write(data),
      drained: () => this.drained(),
      log: this.log,
    }).then(
      (negotiated) => this.afterHandshake(negotiated),
      (err: unknown) => this.handshakeFailed(err),
    );
  }

  /** Server shutdown: a connection still haggling is dropped; one in transmission finishes its replies. */
  shutdown(): void {
    this.shuttingDown = true;
    if (this.transmission) this.transmission.stop();
    else this.socket.destroy();
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) {
        reject(new ConnectionEnded('the connection closed'));
        return;
      }
      const settle = (): void => {
        this.socket.off('drain', settle);
        this.socket.off('close', settle);
        if (this.socket.destroyed) reject(new ConnectionEnded('the connection closed'));
        else resolve();
      };
      this.socket.on('drain', settle);
      this.socket.on('close', settle);
    });
  }

  private afterHandshake(negotiated: Negotiated | undefined): void {
    this.leaveHandshake();
    if (!negotiated) {
      // The last replies are written first; a client that does not read them is not waited for past
      // the drain deadline (the handshake's has been cleared).
      this.closeWithoutExport(() => {
        const deadline = setTimeout(() => this.socket.destroy(), this.options.drainTimeoutMs).unref();
        this.socket.once('close', () => clearTimeout(deadline));
        this.socket.destroySoon();
      });
      return;
    }
    this.transmission = new Transmission({
      socket: this.socket,
      negotiated,
      maxRequestBytes: this.options.maxRequestBytes,
      maxInFlightBytes: this.options.maxConnectionInFlightBytes,
      drainTimeoutMs: this.options.drainTimeoutMs,
      budget: this.options.budget,
      log: this.log.child({ exportName: negotiated.exportName }),
      onEnded: () => this.resolveDone(),
    });
    this.transmission.start(this.reader.takeRest());
    if (this.shuttingDown) this.transmission.stop();
  }

  private handshakeFailed(err: unknown): void {
    this.leaveHandshake();
    if (err instanceof ConnectionEnded) this.log.debug({ reason: err.message }, 'NBD handshake: connection ended');
    else this.log.warn({ err }, 'NBD handshake: internal error; disconnecting');
    this.closeWithoutExport(() => this.socket.destroy());
  }

  private leaveHandshake(): void {
    this.socket.off('data', this.onHandshakeData);
    this.socket.off('end', this.onHandshakeEnd);
    this.socket.off('close', this.onHandshakeEnd);
    clearTimeout(this.handshakeDeadline);
  }

  private closeWithoutExport(close: () => void): void {
    if (this.socket.destroyed) this.resolveDone();
    else this.socket.once('close', () => this.resolveDone());
    close();
  }
}
