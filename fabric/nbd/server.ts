// The NBD server: listens on TCP, runs one Connection per client and shuts them all down
// gracefully. Exports come from an ExportProvider; the server knows nothing about volumes.

import net from 'node:net';
import type pino from 'pino';
import type { ExportProvider } from './export-provider';
import { Connection } from './connection';
import { NodeInFlightBudget } from './inflight-budget';
import { WarningLimiter } from './warning-limiter';

export const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
const MIN_MAX_REQUEST_BYTES = 4096;
/** Structured READ replies carry one chunk of length + 8, which must fit 32 bits. */
const MAX_MAX_REQUEST_BYTES = 0xffffffff - 8;
export const DEFAULT_MAX_CONNECTION_INFLIGHT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_INFLIGHT_BYTES = 1024 * 1024 * 1024;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 16_384;

export interface NbdServerOptions {
  provider: ExportProvider;
  logger: pino.Logger;
  /** Largest READ, WRITE or WRITE_ZEROES accepted (advertised as the maximum block size). */
  maxRequestBytes?: number;
  /**
   * Bytes of requests and replies held per connection, and across all connections, before a
   * connection stops reading (each may go over by the one request it is reading; the node by one
   * request more, which a connection holding nothing may take: NodeInFlightBudget).
   */
  maxConnectionInFlightBytes?: number;
  maxInFlightBytes?: number;
  /**
   * Connections open at once (in handshake, serving, or draining); more are closed at once, counted
   * and logged. A bound on what a flood of connections can take: memory, and file descriptors the
   * node's own files need.
   */
  maxConnections?: number;
  /** A client must finish the handshake this long after connecting. */
  handshakeTimeoutMs?: number;
  /** Once a connection is ending (DISC, end of input, shutdown), how long its last replies may take to leave before it is cut. */
  drainTimeoutMs?: number;
}

export class NbdServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private readonly maxRequestBytes: number;
  private readonly maxConnectionInFlightBytes: number;
  private readonly handshakeTimeoutMs: number;
  private readonly drainTimeoutMs: number;
  private readonly budget: NodeInFlightBudget;
  private closing?: Promise<void>;
  private refused = 0;
  /** A flood of refused connections would flood the log too. */
  private readonly refusedWarnings: WarningLimiter;

  constructor(private readonly options: NbdServerOptions) {
    this.maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    const valid = Number.isInteger(this.maxRequestBytes) && this.maxRequestBytes >= MIN_MAX_REQUEST_BYTES;
    if (!valid || this.maxRequestBytes > MAX_MAX_REQUEST_BYTES) {
      throw new RangeError(`maxRequestBytes must be an integer from ${MIN_MAX_REQUEST_BYTES} to ${MAX_MAX_REQUEST_BYTES}`);
    }
    this.maxConnectionInFlightBytes = positive('maxConnectionInFlightBytes', options.maxConnectionInFlightBytes ?? DEFAULT_MAX_CONNECTION_INFLIGHT_BYTES);
    this.budget = new NodeInFlightBudget(positive('maxInFlightBytes', options.maxInFlightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES), this.maxRequestBytes);
    this.handshakeTimeoutMs = positive('handshakeTimeoutMs', options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
    this.drainTimeoutMs = positive('drainTimeoutMs', options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
    // Half-open: a client may shut down its sending side and still expect its replies.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    // Node closes a connection over the limit before accept() sees it, and tells of it here.
    this.server.maxConnections = positive('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.server.on('drop', (from) => this.onRefused(from));
    this.refusedWarnings = new WarningLimiter(options.logger, 'refused connections (--nbd-max-connections)');
  }

  /** Resolves with the port actually bound (useful with port 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.options.logger.warn({ err }, 'NBD: server error'));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops listening, lets every connection finish its in-flight replies, and closes them. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  connectionCount(): number {
    return this.connections.size;
  }

  /** Connections refused since the start, the node having maxConnections open. */
  refusedConnections(): number {
    return this.refused;
  }

  /** Bytes of requests and replies held by all connections now (see maxInFlightBytes). */
  inFlightBytes(): number {
    return this.budget.bytes;
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new Connection(socket, {
      provider: this.options.provider,
      logger: this.options.logger,
      maxRequestBytes: this.maxRequestBytes,
      maxConnectionInFlightBytes: this.maxConnectionInFlightBytes,
      handshakeTimeoutMs: this.handshakeTimeoutMs,
      drainTimeoutMs: this.drainTimeoutMs,
      budget: this.budget,
    });
    this.connections.add(connection);
    void connection.done.then(() => this.connections.delete(connection));
    connection.start();
  }

  private onRefused(from: net.DropArgument | undefined): void {
    this.refused++;
    const limit = this.server.maxConnections;
    this.refusedWarnings.warn({ from: from?.remoteAddress, open: this.connections.size, maxConnections: limit }, `NBD: a connection was refused: the node has ${limit} open (--nbd-max-connections)`);
  }

  private async shutdown(): Promise<void> {
    this.refusedWarnings.close();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const connections = [...this.connections];
    for (const connection of connections) connection.shutdown();
    await Promise.all(connections.map((connection) => connection.done));
    await stopped;
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a whole number above 0`);
  return value;
}
