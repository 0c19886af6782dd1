// A small typed client for Nomad's HTTP API: the CSI volume and plugin endpoints that `weft nomad`
// uses, and the allocation the CSI node service looks up. Nomad's failures become NomadApiError with
// the status and the message Nomad wrote.

import type { Allocation, CsiPluginStub, CsiVolume, CsiVolumeSpec, CsiVolumeStub } from './types';

export const DEFAULT_NOMAD_ADDR = 'http://127.0.0.1:4646';

/** Each left out is read from the environment, as Nomad's own CLI reads it. */
export interface NomadClientOptions {
  /** Default: NOMAD_ADDR, else http://127.0.0.1:4646. */
  address?: string;
  /** Sent as X-Nomad-Token. Default: NOMAD_TOKEN. */
  token?: string;
  /** Default: NOMAD_NAMESPACE, else Nomad's own default ("default"). */
  namespace?: string;
  timeoutMs?: number;
}

/** Nomad answered with an error status; message is what Nomad wrote (plain text). */
export class NomadApiError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    readonly nomadMessage: string,
  ) {
    super(`Nomad refused ${method} ${path} (HTTP ${status}): ${nomadMessage || 'no message'}`);
    this.name = 'NomadApiError';
  }
}

/** No answer from Nomad at all (refused, unresolvable, timed out). */
export class NomadUnreachableError extends Error {
  constructor(address: string, reason: string) {
    super(`cannot reach Nomad at ${address} (${reason}); set --nomad-addr or NOMAD_ADDR`);
    this.name = 'NomadUnreachableError';
  }
}

export const isNotFound = (error: unknown) => error instanceof NomadApiError && error.status === 404;

type Query = Record<string, string | undefined>;

export class NomadClient {
  readonly address: string;
  private readonly token?: string;
  private readonly namespace?: string;
  private readonly timeoutMs: number;

  /** Throws a TypeError when the address is not an http(s) URL. */
  constructor(options: NomadClientOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    const address = options.address || env.NOMAD_ADDR || DEFAULT_NOMAD_ADDR;
    const url = URL.canParse(address) ? new URL(address) : undefined;
    if (!url || !['http:', 'https:'].includes(url.protocol)) throw new TypeError(`Nomad address "${address}" is not an http(s) URL, e.g. ${DEFAULT_NOMAD_ADDR}`);
    this.address = address.replace(/\/+$/, '');
    this.token = options.token || env.NOMAD_TOKEN || undefined;
    this.namespace = options.namespace || env.NOMAD_NAMESPACE || undefined;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** GET /v1/volumes?type=csi */
  async listCsiVolumes(): Promise<CsiVolumeStub[]> {
    return (await this.request<CsiVolumeStub[]>('GET', '/v1/volumes', { type: 'csi' })) ?? [];
  }

  /** GET /v1/volume/csi/:id; a NomadApiError with status 404 when Nomad has no such volume. */
  readCsiVolume(id: string): Promise<CsiVolume> {
    return this.readOne<CsiVolume>(volumePath(id), 'volume not found');
  }

  /** PUT /v1/volume/csi/:id: makes Nomad know an existing volume. */
  async registerCsiVolume(volume: CsiVolumeSpec): Promise<void> {
    await this.request('PUT', volumePath(volume.ID), {}, { Volumes: [this.inNamespace(volume)] });
  }

  /** PUT /v1/volume/csi/:id/create: Nomad asks the plugin's controller to create the volume, then registers it. */
  async createCsiVolume(volume: CsiVolumeSpec): Promise<CsiVolume[]> {
    const response = await this.request<{ Volumes: CsiVolume[] | null }>('PUT', `${volumePath(volume.ID)}/create`, {}, { Volumes: [this.inNamespace(volume)] });
    return response?.Volumes ?? [];
  }

  /** DELETE /v1/volume/csi/:id: Nomad forgets the volume; the volume itself stays. */
  async deregisterCsiVolume(id: string, options: { force?: boolean } = {}): Promise<void> {
    await this.request('DELETE', volumePath(id), { force: options.force ? 'true' : undefined });
  }

  /** GET /v1/plugins?type=csi */
  async listCsiPlugins(): Promise<CsiPluginStub[]> {
    return (await this.request<CsiPluginStub[]>('GET', '/v1/plugins', { type: 'csi' })) ?? [];
  }

  /** GET /v1/allocation/:id; a NomadApiError with status 404 when Nomad has no such allocation. */
  readAllocation(id: string): Promise<Allocation> {
    return this.readOne<Allocation>(`/v1/allocation/${encodeURIComponent(id)}`, 'alloc not found');
  }

  /** GET of one object; an empty answer is taken as Nomad's 404. */
  private async readOne<T>(path: string, notFoundMessage: string): Promise<T> {
    const found = await this.request<T>('GET', path);
    if (!found) throw new NomadApiError(404, 'GET', path, notFoundMessage);
    return found;
  }

  private inNamespace(volume: CsiVolumeSpec): CsiVolumeSpec {
    return this.namespace && !volume.Namespace ? { ...volume, Namespace: this.namespace } : volume;
  }

  /** Resolves with the parsed JSON body, or undefined when Nomad sent none (register, deregister). */
  private async request<T>(method: string, path: string, query: Query = {}, body?: unknown): Promise<T | undefined> {
    const url = new URL(`${this.address}${path}`);
    for (const [key, value] of Object.entries({ ...query, namespace: this.namespace })) if (value !== undefined) url.searchParams.set(key, value);
    const headers: Record<string, string> = this.token ? { 'X-Nomad-Token': this.token } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new NomadUnreachableError(this.address, failureReason(error));
    }
    const text = await response.text();
    if (!response.ok) throw new NomadApiError(response.status, method, path, text.trim());
    return text.trim() === '' ? undefined : (JSON.parse(text) as T);
  }
}

const volumePath = (id: string) => `/v1/volume/csi/${encodeURIComponent(id)}`;

/** fetch's "fetch failed" hides the reason in its cause (ECONNREFUSED, ENOTFOUND, ...). */
function failureReason(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return 'timed out';
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}
