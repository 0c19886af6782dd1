// FakeConsulAgent stands in for a Consul agent (none runs here): the service endpoints of its HTTP
// API, with Consul's paths, field names and status codes, on 127.0.0.1. A registration with an
// unknown or mistyped field is refused with 400, as Consul refuses a body it cannot decode. Started
// with an ACL token, it acts as an agent whose ACLs deny by default: a request without that token in
// X-Consul-Token is refused with 403, Consul's "Permission denied" or, for a token it does not
// know, "ACL not found".

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A service as PUT /v1/agent/service/register takes it (the fields weftd may send). */
export interface RegisteredService {
  ID: string;
  Name: string;
  Tags?: string[];
  Address?: string;
  Port?: number;
  Meta?: Record<string, string>;
  Check?: ServiceCheck;
  Checks?: ServiceCheck[];
}

export interface ServiceCheck {
  Name?: string;
  CheckID?: string;
  TCP?: string;
  HTTP?: string;
  Interval?: string;
  Timeout?: string;
  DeregisterCriticalServiceAfter?: string;
  Notes?: string;
  Status?: string;
}

const SERVICE_FIELDS: Record<string, (value: unknown) => boolean> = {
  ID: isString, Name: isString, Tags: isStringList, Address: isString, Port: (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535,
  // Each check is looked at by checkError, for a message that says what is wrong with it.
  Meta: isStringMap, Check: () => true, Checks: Array.isArray,
};
const CHECK_FIELDS: Record<string, (value: unknown) => boolean> = {
  Name: isString, CheckID: isString, TCP: isString, HTTP: isString, Interval: isDuration, Timeout: isDuration, DeregisterCriticalServiceAfter: isDuration, Notes: isString, Status: isString,
};

function isString(value: unknown): boolean {
  return typeof value === 'string';
}
function isStringList(value: unknown): boolean {
  return Array.isArray(value) && value.every(isString);
}
function isStringMap(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every(isString);
}
/** A Go duration, as Consul parses them: "10s", "1m", "1m30s", "500ms". */
function isDuration(value: unknown): boolean {
  return typeof value === 'string' && /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(value);
}

/** What is wrong with a check definition, or undefined. Consul wants TCP or HTTP with an Interval (TTL and the others are not accepted here). */
function checkError(check: unknown): string | undefined {
  if (typeof check !== 'object' || check === null || Array.isArray(check)) return 'a check must be an object';
  const fields = check as Record<string, unknown>;
  for (const [key, value] of Object.entries(fields)) {
    if (!(key in CHECK_FIELDS)) return `unknown check field "${key}"`;
    if (!CHECK_FIELDS[key](value)) return `bad check field ${key}: ${JSON.stringify(value)}`;
  }
  if ((fields.TCP === undefined) === (fields.HTTP === undefined)) return 'a check needs exactly one of TCP and HTTP';
  if (fields.Interval === undefined) return 'Interval is required for TCP and HTTP checks';
  return undefined;
}

function serviceError(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object';
  const fields = body as Record<string, unknown>;
  for (const [key, value] of Object.entries(fields)) {
    if (!(key in SERVICE_FIELDS)) return `json: unknown field "${key}"`;
    if (!SERVICE_FIELDS[key](value)) return `bad field ${key}: ${JSON.stringify(value)}`;
  }
  const checks = [...(fields.Check === undefined ? [] : [fields.Check]), ...((fields.Checks as unknown[] | undefined) ?? [])];
  const wrongCheck = checks.map(checkError).find(Boolean);
  if (wrongCheck) return wrongCheck;
  if (typeof fields.Name !== 'string' || fields.Name === '') return 'Missing service name';
  return undefined;
}

export class FakeConsulAgent {
  /** By service ID. */
  readonly services = new Map<string, RegisteredService>();
  /** Every request, "METHOD PATH STATUS", in order. */
  readonly log: string[] = [];
  private readonly server = http.createServer((request, response) => void this.serve(request, response));
  /** Set: deregistrations are not answered (an agent that hangs), and counted here. */
  hangDeregistrations = false;
  hungDeregistrations = 0;

  private constructor(private readonly aclToken: string | undefined) {}

  /** Listens on 127.0.0.1:port (0: a free one); with aclToken, only requests carrying it are allowed. */
  static async start(port = 0, aclToken?: string): Promise<FakeConsulAgent> {
    const agent = new FakeConsulAgent(aclToken);
    await new Promise<void>((resolve, reject) => agent.server.once('error', reject).listen(port, '127.0.0.1', resolve));
    return agent;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async serve(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? '/', 'http://agent');
    if (this.hangDeregistrations && url.pathname.startsWith('/v1/agent/service/deregister/')) {
      this.hungDeregistrations += 1;
      return; // closed by close()
    }
    const token = request.headers['x-consul-token'];
    const { status, body } = this.aclToken !== undefined && token !== this.aclToken
      ? { status: 403, body: token === undefined ? `Permission denied: anonymous token lacks permission 'service:write'. The anonymous token is used implicitly when a request does not specify a token.` : 'ACL not found' }
      : this.answer(request.method ?? '', url.pathname, Buffer.concat(chunks).toString());
    this.log.push(`${request.method} ${url.pathname} ${status}`);
    response.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' });
    response.end(typeof body === 'string' ? body : JSON.stringify(body));
  }

  private answer(method: string, path: string, text: string): { status: number; body: unknown } {
    const deregister = /^\/v1\/agent\/service\/deregister\/(.+)$/.exec(path);
    if (method === 'PUT' && path === '/v1/agent/service/register') return this.register(text);
    if (method === 'PUT' && deregister) {
      const id = decodeURIComponent(deregister[1]);
      if (!this.services.delete(id)) return { status: 404, body: `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.` };
      return { status: 200, body: '' };
    }
    if (method === 'GET' && path === '/v1/agent/services') {
      // Consul names the service's name "Service" in this answer.
      const list = [...this.services.values()].map(({ Name, Check: _check, Checks: _checks, ...rest }) => [rest.ID, { ...rest, Service: Name }]);
      return { status: 200, body: Object.fromEntries(list) };
    }
    return { status: 404, body: 'Not found' };
  }

  private register(text: string): { status: number; body: unknown } {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      return { status: 400, body: `Request decode failed: ${(error as Error).message}` };
    }
    const wrong = serviceError(body);
    if (wrong) return { status: 400, body: `Request decode failed: ${wrong}` };
    const service = body as RegisteredService;
    this.services.set(service.ID ?? service.Name, service);
    return { status: 200, body: '' };
  }
}
