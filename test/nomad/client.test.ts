// NomadClient against FakeNomad: each endpoint's request (method, path, body, token, namespace) and
// response, Nomad's errors as typed errors with Nomad's message, and the environment defaults; the
// CSI node service's allocation-to-job lookup, which answers undefined rather than fail.

import { DEFAULT_NOMAD_ADDR, isNotFound, NomadApiError, NomadClient, NomadUnreachableError } from '../../adapters/nomad/client';
import type { CsiVolumeSpec } from '../../adapters/nomad/types';
import pino from 'pino';
import { allocationJobLookup } from '../../adapters/nomad/allocation-job';
import { FakeNomad } from '../helpers/fake-nomad';

const TOKEN = 'c0ffee00-0000-4000-8000-000000000001';

const spec = (id: string, extra: Partial<CsiVolumeSpec> = {}): CsiVolumeSpec => ({
  ID: id,
  Name: id,
  ExternalID: id,
  PluginID: 'weft',
  RequestedCapabilities: [{ AccessMode: 'single-node-writer', AttachmentMode: 'file-system' }],
  ...extra,
});

let nomad: FakeNomad;
let client: NomadClient;

beforeEach(async () => {
  nomad = await FakeNomad.start({ token: TOKEN });
  nomad.addPlugin('weft');
  client = new NomadClient({ address: nomad.address, token: TOKEN }, {});
});

afterEach(() => nomad.close());

describe('volumes', () => {
  it('registers a volume with PUT /v1/volume/csi/:id and {"Volumes": [...]}, then reads and lists it', async () => {
    await client.registerCsiVolume(spec('data'));
    expect(nomad.requests[0]).toMatchObject({ method: 'PUT', path: '/v1/volume/csi/data', token: TOKEN, body: { Volumes: [spec('data')] } });
    const volume = await client.readCsiVolume('data');
    expect(volume).toMatchObject({ ID: 'data', ExternalID: 'data', PluginID: 'weft', Namespace: 'default', Schedulable: true });
    const list = await client.listCsiVolumes();
    expect(nomad.requests[2]).toMatchObject({ method: 'GET', path: '/v1/volumes', query: { type: 'csi' } });
    expect(list.map((stub) => [stub.ID, stub.ExternalID, stub.PluginID])).toEqual([['data', 'data', 'weft']]);
  });

  it('asks Nomad to create a volume through the plugin with PUT /v1/volume/csi/:id/create', async () => {
    const created = await client.createCsiVolume(spec('made', { ExternalID: undefined, RequestedCapacityMin: 1 << 30, Parameters: { class: 'ssd' } }));
    expect(nomad.requests[0]).toMatchObject({ method: 'PUT', path: '/v1/volume/csi/made/create' });
    expect(created).toEqual([expect.objectContaining({ ID: 'made', ExternalID: 'made', Capacity: 1 << 30, Parameters: { class: 'ssd' } })]);
  });

  it('deregisters with DELETE /v1/volume/csi/:id, with force when asked', async () => {
    await client.registerCsiVolume(spec('data'));
    await client.deregisterCsiVolume('data', { force: true });
    expect(nomad.requests[1]).toMatchObject({ method: 'DELETE', path: '/v1/volume/csi/data', query: { force: 'true' } });
    expect(nomad.volume('data')).toBeUndefined();
  });

  it('escapes volume ids in paths', async () => {
    await client.registerCsiVolume(spec('data[0]'));
    expect(nomad.requests[0].path).toBe('/v1/volume/csi/data%5B0%5D');
    expect((await client.readCsiVolume('data[0]')).ID).toBe('data[0]');
  });

  it('sends the namespace as Nomad expects it, in the query and the volume', async () => {
    const scoped = new NomadClient({ address: nomad.address, token: TOKEN, namespace: 'prod' }, {});
    await scoped.registerCsiVolume(spec('data'));
    expect(nomad.requests[0]).toMatchObject({ query: { namespace: 'prod' }, body: { Volumes: [{ Namespace: 'prod' }] } });
    expect((await scoped.readCsiVolume('data')).Namespace).toBe('prod');
    await expect(client.readCsiVolume('data')).rejects.toThrow(/404/);
  });
});

describe('plugins', () => {
  it('lists CSI plugins with GET /v1/plugins?type=csi', async () => {
    const plugins = await client.listCsiPlugins();
    expect(nomad.requests[0]).toMatchObject({ method: 'GET', path: '/v1/plugins', query: { type: 'csi' } });
    expect(plugins).toEqual([expect.objectContaining({ ID: 'weft', ControllersHealthy: 1, NodesHealthy: 1 })]);
  });
});

describe('allocations', () => {
  const ALLOC = '5b1e3a4c-9f2d-4e8a-b7c6-1d2e3f4a5b6c';

  it('reads an allocation with GET /v1/allocation/:id: its job and task group', async () => {
    nomad.addAllocation(ALLOC, 'web', 'cache');
    expect(await client.readAllocation(ALLOC)).toMatchObject({ ID: ALLOC, JobID: 'web', TaskGroup: 'cache', Namespace: 'default' });
    expect(nomad.requests[0]).toMatchObject({ method: 'GET', path: `/v1/allocation/${ALLOC}`, token: TOKEN });
    const missing = await client.readAllocation('00000000-0000-4000-8000-000000000000').catch((caught: unknown) => caught);
    expect(isNotFound(missing)).toBe(true);
    expect((missing as NomadApiError).nomadMessage).toBe('alloc not found');
  });

  it('looks up the job for the CSI node service; Nomad not knowing the allocation, refusing or gone: undefined and a warning', async () => {
    nomad.addAllocation(ALLOC, 'web', 'cache');
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const lookup = allocationJobLookup({ address: nomad.address, token: TOKEN }, logger);
    expect(await lookup(ALLOC)).toEqual({ jobId: 'web', taskGroup: 'cache' });
    expect(await lookup('00000000-0000-4000-8000-000000000000')).toBeUndefined();
    expect(await allocationJobLookup({ address: nomad.address, token: 'not-a-token' }, logger)(ALLOC)).toBeUndefined();
    await nomad.close();
    expect(await lookup(ALLOC)).toBeUndefined();
    nomad = await FakeNomad.start();
    const reasons = warnings.map((line) => JSON.parse(line) as { msg: string; reason: string; allocationId: string });
    expect(reasons.map((r) => r.msg)).toEqual(Array(3).fill('could not look up the job of a Nomad allocation; its job label stays empty'));
    expect(reasons.map((r) => r.reason)).toEqual([
      expect.stringMatching(/HTTP 404\): alloc not found$/),
      expect.stringMatching(/HTTP 403\): ACL token not found$/),
      // Refused, or the socket fetch kept alive closed under it.
      expect.stringMatching(/^cannot reach Nomad at http:\/\/127\.0\.0\.1:\d+ \(\w+\)/),
    ]);
  });
});

describe('errors', () => {
  it('turns a missing volume into a NomadApiError with status 404 and Nomad\'s message', async () => {
    const error = await client.readCsiVolume('nope').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NomadApiError);
    expect(isNotFound(error)).toBe(true);
    expect((error as NomadApiError).nomadMessage).toBe('volume not found');
  });

  it('reports Nomad\'s own reason for a refused registration', async () => {
    await expect(client.registerCsiVolume(spec('data', { PluginID: 'ebs' }))).rejects.toThrow(
      'Nomad refused PUT /v1/volume/csi/data (HTTP 500): no CSI plugin named: ebs could be found',
    );
    await expect(client.registerCsiVolume(spec('data', { PluginID: '' }))).rejects.toThrow(/validation: missing plugin id/);
  });

  it('reports a missing or wrong ACL token as Nomad does', async () => {
    const anonymous = new NomadClient({ address: nomad.address }, {});
    await expect(anonymous.listCsiVolumes()).rejects.toMatchObject({ status: 403, nomadMessage: 'Permission denied' });
    const wrong = new NomadClient({ address: nomad.address, token: 'not-a-token' }, {});
    await expect(wrong.listCsiPlugins()).rejects.toMatchObject({ status: 403, nomadMessage: 'ACL token not found' });
  });

  it('says when Nomad cannot be reached at all', async () => {
    const address = nomad.address;
    await nomad.close();
    const error = await new NomadClient({ address }, {}).listCsiVolumes().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NomadUnreachableError);
    expect((error as Error).message).toBe(`cannot reach Nomad at ${address} (ECONNREFUSED); set --nomad-addr or NOMAD_ADDR`);
    nomad = await FakeNomad.start();
  });

  it('refuses an address that is not an http(s) URL', () => {
    expect(() => new NomadClient({ address: '127.0.0.1:4646' }, {})).toThrow(/is not an http\(s\) URL/);
  });
});

describe('defaults', () => {
  it('reads NOMAD_ADDR, NOMAD_TOKEN and NOMAD_NAMESPACE', async () => {
    const fromEnv = new NomadClient({}, { NOMAD_ADDR: nomad.address, NOMAD_TOKEN: TOKEN, NOMAD_NAMESPACE: 'ops' });
    await fromEnv.listCsiVolumes();
    expect(nomad.requests[0]).toMatchObject({ token: TOKEN, query: { type: 'csi', namespace: 'ops' } });
  });

  it('talks to the local agent without them', () => {
    expect(new NomadClient({}, {}).address).toBe(DEFAULT_NOMAD_ADDR);
  });
});
