// FakeKubernetesApi stands in for a Kubernetes API server (none runs here): GET /api/v1/nodes/{name}
// with the real paths, Node objects, Status errors (401, 403, 404), bearer tokens and HTTPS under its
// own CA (a certificate openssl makes), on 127.0.0.1. kubeconfig() writes the file KUBECONFIG names.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/** The account weftd runs as in deploy/kubernetes, named in 403 messages as the API server names it. */
const SERVICE_ACCOUNT_USER = 'system:serviceaccount:weft-system:weft-node';
const TOKEN = 'fake-kubernetes-token';

export class FakeKubernetesApi {
  /** Every request's path, in order. */
  readonly requests: string[] = [];
  address = '';
  /** Node name -> its labels. */
  private readonly nodes = new Map<string, Record<string, string>>();
  /** Nodes the service account may not get (RBAC without "get" on nodes). */
  private readonly forbidden = new Set<string>();
  private readonly server: https.Server;

  private constructor(private readonly certificate: Certificate) {
    this.server = https.createServer(certificate, (request, response) => this.serve(request, response));
  }

  /** Starts on a free port of 127.0.0.1, with a certificate made in dir. */
  static async start(dir: string): Promise<FakeKubernetesApi> {
    const api = new FakeKubernetesApi(selfSignedCertificate(dir));
    await new Promise<void>((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.address = `https://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
    return api;
  }

  addNode(name: string, labels: Record<string, string> = {}): void {
    this.nodes.set(name, { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...labels });
  }

  forbid(name: string): void {
    this.forbidden.add(name);
  }

  /**
   * Writes a kubeconfig for this server (its CA, token auth as a service account's) into dir; returns
   * its path. Another server address gives a kubeconfig that points where no API server answers.
   */
  kubeconfig(dir: string, server = this.address): string {
    return writeKubeconfig(dir, server, this.certificate.cert, TOKEN);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private serve(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? '/', this.address);
    this.requests.push(url.pathname);
    const [status, body] = this.answer(request, url.pathname);
    response.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  }

  private answer(request: http.IncomingMessage, pathname: string): [number, unknown] {
    if (request.headers.authorization !== `Bearer ${TOKEN}`) return [401, statusObject(401, 'Unauthorized', 'Unauthorized')];
    const match = /^\/api\/v1\/nodes\/([^/]+)$/.exec(pathname);
    if (request.method !== 'GET' || !match) return [404, statusObject(404, 'NotFound', 'the server could not find the requested resource')];
    const name = decodeURIComponent(match[1]);
    const details = { name, kind: 'nodes' };
    if (this.forbidden.has(name)) {
      const message = `nodes "${name}" is forbidden: User "${SERVICE_ACCOUNT_USER}" cannot get resource "nodes" in API group "" at the cluster scope`;
      return [403, statusObject(403, 'Forbidden', message, details)];
    }
    const labels = this.nodes.get(name);
    if (!labels) return [404, statusObject(404, 'NotFound', `nodes "${name}" not found`, details)];
    return [200, nodeObject(name, labels)];
  }
}

interface Certificate {
  /** PEM. */
  key: string;
  cert: string;
}

/** A key and a self-signed certificate for 127.0.0.1, which clients trust as the cluster's CA. */
function selfSignedCertificate(dir: string): Certificate {
  const [keyFile, certFile] = [path.join(dir, 'apiserver.key'), path.join(dir, 'apiserver.crt')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'pipe' });
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8') };
}

/** A kubeconfig with one cluster (its server and CA certificate), one token user and one current context. */
function writeKubeconfig(dir: string, server: string, caCertificate: string, token: string): string {
  const file = path.join(dir, 'kubeconfig');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server, 'certificate-authority-data': Buffer.from(caCertificate).toString('base64') } }],
    users: [{ name: 'weft-node', user: { token } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'weft-node' } }],
    'current-context': 'fake',
  };
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

function statusObject(code: number, reason: string, message: string, details?: { name: string; kind: string }): unknown {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details && { details }), code };
}

function nodeObject(name: string, labels: Record<string, string>): unknown {
  return {
    kind: 'Node',
    apiVersion: 'v1',
    metadata: { name, uid: `uid-${name}`, resourceVersion: '1', creationTimestamp: '2025-01-01T00:00:00Z', labels },
    spec: { podCIDR: '10.244.0.0/24' },
    status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { kubeletVersion: 'v1.30.0' } },
  };
}
