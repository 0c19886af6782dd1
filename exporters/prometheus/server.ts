// The exporter's HTTP server: GET /metrics (the registry's exposition), GET /healthz (the process
// answers) and GET /readyz (the engine open, the cluster store reachable, the API listening: 503 and
// what is not, otherwise).

import http from 'node:http';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../../fabric/logger';
import type { NodeTelemetry } from '../../fabric/telemetry';

const TEXT = { 'content-type': 'text/plain; charset=utf-8' };

export class MetricsServer {
  private readonly server: http.Server;

  constructor(registry: Registry, telemetry: NodeTelemetry, private readonly logger: Logger) {
    this.server = http.createServer((request, response) => {
      // The path before any query, as sent: new URL() throws on targets such as "//" (an empty
      // host), and a throw here, outside any handler, would end weftd.
      const pathname = (request.url ?? '/').split('?')[0];
      if (request.method !== 'GET') return void response.writeHead(405, { ...TEXT, allow: 'GET' }).end('only GET is served\n');
      const answer = ROUTES[pathname];
      if (!answer) return void response.writeHead(404, TEXT).end('not found: weftd serves GET /metrics, /healthz and /readyz\n');
      answer(registry, telemetry).then(
        ({ code, type, body }) => response.writeHead(code, { 'content-type': type }).end(body),
        (error: Error) => response.writeHead(500, TEXT).end(`${error.message}\n`),
      );
    });
  }

  /** Resolves with the port bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        // Without a listener, an error once listening (an accept failing for want of file descriptors) would end weftd.
        this.server.on('error', (err) => this.logger.warn({ err }, 'metrics: server error'));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

type Answer = { code: number; type: string; body: string };

const ROUTES: Record<string, (registry: Registry, telemetry: NodeTelemetry) => Promise<Answer>> = {
  '/metrics': async (registry) => ({ code: 200, type: registry.contentType, body: await registry.metrics() }),
  '/healthz': async () => ({ code: 200, type: TEXT['content-type'], body: 'ok\n' }),
  '/readyz': async (_registry, telemetry) => {
    const checks = await telemetry.readiness();
    const failed = checks.filter((check) => !check.ok);
    const body = checks.map((check) => `${check.name}: ${check.ok ? 'ok' : `not ready: ${check.detail}`}\n`).join('');
    return { code: failed.length ? 503 : 200, type: TEXT['content-type'], body };
  },
};
