// FakeNomad stands in for a Nomad server (none runs here): its CSI volume and plugin endpoints, and
// reading an allocation, with Nomad's paths, JSON fields, plain-text errors, status codes and ACL
// tokens, on 127.0.0.1.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Allocation, CsiPluginStub, CsiVolume, CsiVolumeSpec, CsiVolumeStub } from '../../adapters/nomad/types';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  /** The X-Nomad-Token header, if sent. */
  token?: string;
  body?: unknown;
}

export interface FakeNomadOptions {
  /** When set, ACLs are on: requests need this X-Nomad-Token. */
  token?: string;
}

/** A handler's answer: a status and a JSON body (undefined: none) or Nomad's plain-text error. */
interface Reply {
  status: number;
  json?: unknown;
  error?: string;
}

const ok = (json?: unknown): Reply => ({ status: 200, json });
const fail = (status: number, error: string): Reply => ({ status, error });

export class FakeNomad {
  readonly requests: RecordedRequest[] = [];
  /** By "namespace/id". */
  readonly volumes = new Map<string, CsiVolume>();
  /** By id (allocation ids are unique across namespaces). */
  readonly allocations = new Map<string, Allocation>();
  address = '';
  /**
   * A fault: the next registration is stored, then answered with this error (HTTP 500), as when
   * Nomad's answer is lost after its servers committed it (a leader change, a forwarding timeout).
   */
  registerFailsAfterCommit: string | undefined;
  private readonly plugins = new Map<string, CsiPluginStub>();
  private readonly server = http.createServer((request, response) => void this.serve(request, response));
  private index = 100;

  private constructor(private readonly options: FakeNomadOptions) {}

  static async start(options: FakeNomadOptions = {}): Promise<FakeNomad> {
    const nomad = new FakeNomad(options);
    await new Promise<void>((resolve) => nomad.server.listen(0, '127.0.0.1', resolve));
    nomad.address = `http://127.0.0.1:${(nomad.server.address() as AddressInfo).port}`;
    return nomad;
  }

  /** A CSI plugin as Nomad knows it once its jobs run (all instances healthy unless told). */
  addPlugin(id: string, health: Partial<CsiPluginStub> = {}): void {
    const counts = { ControllerRequired: true, ControllersHealthy: 1, ControllersExpected: 1, NodesHealthy: 1, NodesExpected: 1 };
    this.plugins.set(id, { ID: id, Provider: 'csi.weft.io', ...counts, CreateIndex: this.index, ModifyIndex: this.index, ...health });
  }

  /** An allocation of a job's task group, running on some client. */
  addAllocation(id: string, jobId: string, taskGroup: string, namespace = 'default'): void {
    const Name = `${jobId}.${taskGroup}[0]`;
    this.allocations.set(id, { ID: id, Namespace: namespace, Name, NodeID: '7b3f0c52-0000-4000-8000-000000000001', JobID: jobId, TaskGroup: taskGroup, ClientStatus: 'running' });
  }

  volume(id: string, namespace = 'default'): CsiVolume | undefined {
    return this.volumes.get(`${namespace}/${id}`);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async serve(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.address);
    const text = await readBody(request);
    const recorded: RecordedRequest = {
      method: request.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      token: request.headers['x-nomad-token'] as string | undefined,
      body: text ? safeJson(text) : undefined,
    };
    this.requests.push(recorded);
    const reply = this.aclReply(recorded.token) ?? this.route(recorded, text);
    response.statusCode = reply.status;
    if (reply.error !== undefined) response.end(reply.error);
    else if (reply.json === undefined) response.end();
    else response.setHeader('Content-Type', 'application/json').end(JSON.stringify(reply.json));
  }

  /** Nomad with ACLs on: no token is the anonymous token, which may do nothing here. */
  private aclReply(token: string | undefined): Reply | undefined {
    if (this.options.token === undefined || token === this.options.token) return undefined;
    return token === undefined ? fail(403, 'Permission denied') : fail(403, 'ACL token not found');
  }

  private route(request: RecordedRequest, text: string): Reply {
    const { method, path } = request;
    if (path === '/v1/volumes') return method === 'GET' ? this.listVolumes(request.query) : fail(405, 'Invalid method');
    if (path === '/v1/plugins') return method === 'GET' ? this.listPlugins(request.query) : fail(405, 'Invalid method');
    const allocation = /^\/v1\/allocation\/([^/]+)$/.exec(path);
    if (allocation) return method === 'GET' ? this.readAllocation(decodeURIComponent(allocation[1])) : fail(405, 'Invalid method');
    const match = /^\/v1\/volume\/csi\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (!match) return fail(404, '404 page not found');
    const [, id, action] = match;
    const namespace = request.query.namespace ?? 'default';
    if (action === 'create') return method === 'PUT' || method === 'POST' ? this.register(text, namespace, true) : fail(405, 'Invalid method');
    if (action !== undefined) return fail(404, 'Resource not found');
    if (method === 'GET') return this.readVolume(decodeURIComponent(id), namespace);
    if (method === 'PUT' || method === 'POST') return this.register(text, namespace, false);
    if (method === 'DELETE') return this.deregister(decodeURIComponent(id), namespace, request.query.force);
    return fail(405, 'Invalid method');
  }

  private listVolumes(query: Record<string, string>): Reply {
    if (query.type === undefined) return ok([]);
    if (query.type !== 'csi') return ok();
    const namespace = query.namespace ?? 'default';
    const volumes = [...this.volumes.values()].filter(
      (volume) => (namespace === '*' || volume.Namespace === namespace) && volume.PluginID.startsWith(query.plugin_id ?? ''),
    );
    return ok(volumes.map(stub));
  }

  private listPlugins(query: Record<string, string>): Reply {
    if (query.type === undefined) return ok([]);
    return query.type === 'csi' ? ok([...this.plugins.values()]) : ok();
  }

  private readAllocation(id: string): Reply {
    const allocation = this.allocations.get(id);
    return allocation ? ok(allocation) : fail(404, 'alloc not found');
  }

  private readVolume(id: string, namespace: string): Reply {
    const volume = this.volume(id, namespace);
    return volume ? ok(volume) : fail(404, 'volume not found');
  }

  /** Register (and create, where the fake also plays the plugin's controller): validate each volume as Nomad does, then store them all. */
  private register(text: string, namespace: string, create: boolean): Reply {
    const request = safeJson(text) as { Volumes?: CsiVolumeSpec[] } | undefined;
    if (!request || !Array.isArray(request.Volumes)) return fail(400, 'Request decode failed: expected {"Volumes": [...]}');
    const volumes = request.Volumes.map((spec) => ({ ...spec, Namespace: spec.Namespace || namespace }));
    for (const spec of volumes) {
      const problem = this.registrationProblem(spec, create);
      if (problem) return fail(500, problem);
    }
    const stored = volumes.map((spec) => this.store(spec, create));
    const lostAnswer = this.registerFailsAfterCommit;
    this.registerFailsAfterCommit = undefined;
    if (lostAnswer) return fail(500, lostAnswer);
    return create ? ok({ Volumes: stored, Warnings: '', Index: this.index, LastContact: 0, KnownLeader: true, NextToken: '' }) : ok();
  }

  private registrationProblem(spec: CsiVolumeSpec, create: boolean): string | undefined {
    const missing = [!spec.ID && 'missing volume id', !spec.PluginID && 'missing plugin id', spec.SnapshotID && spec.CloneID && 'only one of snapshot_id and clone_id is allowed'];
    const errors = missing.filter((error): error is string => typeof error === 'string');
    if (errors.length) return `validation: ${errors.join(', ')}`;
    if (!this.plugins.has(spec.PluginID)) return `no CSI plugin named: ${spec.PluginID} could be found`;
    const existing = this.volume(spec.ID, spec.Namespace);
    if (!create && existing && spec.ExternalID !== existing.ExternalID) return 'volume external ID cannot be updated';
    return undefined;
  }

  private store(spec: CsiVolumeSpec, create: boolean): CsiVolume {
    const plugin = this.plugins.get(spec.PluginID) as CsiPluginStub;
    const namespace = spec.Namespace ?? 'default';
    const index = ++this.index;
    const volume: CsiVolume = {
      ID: spec.ID,
      Namespace: namespace,
      Name: spec.Name,
      // The plugin's CreateVolume returns the volume id; Weft's is the (Weft-valid) name.
      ExternalID: create ? spec.Name : spec.ExternalID ?? '',
      // As Nomad's register: a new volume's topologies are the ones its request requires.
      Topologies: spec.RequestedTopologies?.Required ?? [],
      AccessMode: '',
      AttachmentMode: '',
      RequestedCapabilities: spec.RequestedCapabilities ?? null,
      Capacity: create ? spec.RequestedCapacityMin ?? spec.RequestedCapacityMax ?? 0 : 0,
      RequestedCapacityMin: spec.RequestedCapacityMin ?? 0,
      RequestedCapacityMax: spec.RequestedCapacityMax ?? 0,
      Parameters: spec.Parameters ?? null,
      Context: spec.Context ?? null,
      Schedulable: plugin.NodesHealthy > 0 && (!plugin.ControllerRequired || plugin.ControllersHealthy > 0),
      PluginID: plugin.ID,
      Provider: plugin.Provider,
      ProviderVersion: '0.1.0',
      ControllerRequired: plugin.ControllerRequired,
      ControllersHealthy: plugin.ControllersHealthy,
      ControllersExpected: plugin.ControllersExpected,
      NodesHealthy: plugin.NodesHealthy,
      NodesExpected: plugin.NodesExpected,
      Allocations: [],
      CreateIndex: this.volume(spec.ID, namespace)?.CreateIndex ?? index,
      ModifyIndex: index,
    };
    this.volumes.set(`${namespace}/${spec.ID}`, volume);
    return volume;
  }

  private deregister(id: string, namespace: string, force: string | undefined): Reply {
    if (force !== undefined && !['true', 'false', '1', '0'].includes(force)) return fail(400, 'invalid force value');
    if (!this.volumes.delete(`${namespace}/${id}`)) return fail(500, `volume not found: ${id}`);
    return ok();
  }
}

/** The list form of a volume (CSIVolListStub). */
function stub(volume: CsiVolume): CsiVolumeStub & { CurrentReaders: number; CurrentWriters: number } {
  const { ID, Namespace, Name, ExternalID, Topologies, AccessMode, AttachmentMode, Schedulable, PluginID, Provider } = volume;
  const { ControllerRequired, ControllersHealthy, ControllersExpected, NodesHealthy, NodesExpected, CreateIndex, ModifyIndex } = volume;
  return {
    ID, Namespace, Name, ExternalID, Topologies, AccessMode, AttachmentMode, CurrentReaders: 0, CurrentWriters: 0, Schedulable, PluginID, Provider,
    ControllerRequired, ControllersHealthy, ControllersExpected, NodesHealthy, NodesExpected, CreateIndex, ModifyIndex,
  };
}

function readBody(request: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString()));
    request.on('error', reject);
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
