// CsiServer: serves the Identity service and the chosen Controller and Node services on a unix
// socket ("unix:///path/csi.sock"), replacing a stale socket file that no server answers on.

import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import type { handleUnaryCall, sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ApiCallStats } from '../../fabric/api/call-stats';
import { csiServiceDefinition } from './definition';

export interface CsiServerOptions {
  logger: Logger;
  identity: UntypedServiceImplementation;
  /** Served when given. */
  controller?: UntypedServiceImplementation;
  node?: UntypedServiceImplementation;
  /** How long close() lets running calls (a stage, a format) finish before cutting them; default 10000. */
  shutdownGraceMs?: number;
  /** Where each call is counted, by method and status code, with its latency (weft_api_requests_total). */
  calls?: ApiCallStats;
}

/** A socket endpoint that cannot be served; the message says why. */
export class CsiEndpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsiEndpointError';
  }
}

export class CsiServer {
  private readonly server = new grpc.Server();
  private readonly logger: Logger;
  private readonly shutdownGraceMs: number;
  private socketPath?: string;

  constructor(options: CsiServerOptions) {
    this.logger = options.logger;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 10_000;
    this.server.addService(csiServiceDefinition('Identity'), counted('Identity', options.identity, options.calls));
    if (options.controller) this.server.addService(csiServiceDefinition('Controller'), counted('Controller', options.controller, options.calls));
    if (options.node) this.server.addService(csiServiceDefinition('Node'), counted('Node', options.node, options.calls));
  }

  /** Binds endpoint ("unix:///ABSOLUTE/PATH"), creating its directory, and serves. */
  async listen(endpoint: string): Promise<void> {
    const socketPath = socketPathOf(endpoint);
    await fs.promises.mkdir(path.dirname(socketPath), { recursive: true });
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve()));
    });
    this.socketPath = socketPath;
    this.logger.debug({ socketPath }, 'CSI socket bound');
  }

  /** Stops accepting calls, lets running ones finish for up to shutdownGraceMs, removes the socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.server.forceShutdown(), this.shutdownGraceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.socketPath) await fs.promises.rm(this.socketPath, { force: true });
  }
}

export function socketPathOf(endpoint: string): string {
  const match = /^unix:\/\/(\/.+)$/.exec(endpoint);
  if (!match) throw new CsiEndpointError(`CSI endpoint "${endpoint}" is not unix:///ABSOLUTE/PATH`);
  return path.normalize(match[1]);
}

/** A socket file left by a process that died is removed; a live one, or any other file, is an error. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const stat = await fs.promises.lstat(socketPath).catch(() => undefined);
  if (!stat) return;
  if (!stat.isSocket()) throw new CsiEndpointError(`CSI endpoint ${socketPath} exists and is not a socket; not replacing it`);
  if (await answers(socketPath)) throw new CsiEndpointError(`CSI endpoint ${socketPath} is in use by another process`);
  await fs.promises.rm(socketPath, { force: true });
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** The service's unary handlers, each call counted as it is answered. */
function counted(service: string, implementation: UntypedServiceImplementation, calls: ApiCallStats | undefined): UntypedServiceImplementation {
  if (!calls) return implementation;
  const wrapped: UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(implementation)) {
    const path = `/csi.v1.${service}/${method}`;
    wrapped[method] = ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const startMs = performance.now();
      (handler as handleUnaryCall<unknown, unknown>)(call, (error, value) => {
        calls.record(path, error?.code ?? grpc.status.OK, (performance.now() - startMs) / 1000);
        callback(error, value);
      });
    }) as handleUnaryCall<unknown, unknown>;
  }
  return wrapped;
}
