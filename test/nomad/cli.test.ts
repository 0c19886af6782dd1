// `weft nomad volume ...` end to end: the real weft CLI against a real weftd and FakeNomad. Checks what
// each command makes in both places, that a failed registration leaves no Weft volume, and its errors.

import { NomadClient } from '../../adapters/nomad/client';
import { FakeNomad } from '../helpers/fake-nomad';
import { cleanupAll, startWeftd, type RunResult, type WeftdHandle } from '../helpers/weftd';

const TOKEN = 'c0ffee00-0000-4000-8000-000000000002';

let weftd: WeftdHandle;
let nomad: FakeNomad;

/** The environment without the caller's own Nomad settings, plus the test's. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('NOMAD_') && key !== 'WEFT_ENDPOINT'));
  return { ...clean, NOMAD_TOKEN: TOKEN, ...extra };
}

const weftNomad = (args: string[], extra: Record<string, string> = {}) =>
  weftd.weft(['nomad', 'volume', ...args, '--nomad-addr', nomad.address], { env: env(extra), timeoutMs: 60_000 });

const json = (result: RunResult) => JSON.parse(result.stdout) as Record<string, never>;

beforeAll(async () => {
  weftd = await startWeftd();
});

beforeEach(async () => {
  nomad = await FakeNomad.start({ token: TOKEN });
  nomad.addPlugin('weft');
});

afterEach(() => nomad.close());
afterAll(cleanupAll);

describe('weft nomad volume create', () => {
  it('creates the Weft volume and registers it in Nomad under the weft plugin, external id = its CSI volume id', async () => {
    const result = await weftNomad(['create', 'web-data', '--size', '64MiB']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/created volume "web-data" \(64 MiB in class default\); in Nomad as "web-data" of plugin weft, schedulable/);
    expect(nomad.volume('web-data')).toMatchObject({
      ExternalID: 'web-data',
      PluginID: 'weft',
      RequestedCapabilities: [{ AccessMode: 'single-node-writer', AttachmentMode: 'file-system' }],
      // A volume outside the cluster is on this weftd's node only: Nomad places its claimants there.
      Topologies: [{ Segments: { 'topology.weft.io/node': weftd.nodeId } }],
    });
    expect(nomad.requests.find((request) => request.method === 'PUT')).toMatchObject({
      token: TOKEN,
      body: { Volumes: [{ ID: 'web-data', MountOptions: { FsType: 'ext4' } }] },
    });
    expect((await weftd.weft(['volume', 'show', 'web-data'])).stdout).toMatch(/Size:\s+64 MiB/);
  });

  it('registers a volume of a zoned node with both its topology keys (Nomad before 1.8 matches only equal topologies)', async () => {
    const zoned = await startWeftd({ extraArgs: ['--zone', 'z9'] });
    const result = await zoned.weft(['nomad', 'volume', 'create', 'zoned', '--size', '16MiB', '--nomad-addr', nomad.address], { env: env(), timeoutMs: 60_000 });
    expect(result.stderr).toBe('');
    expect(nomad.volume('zoned')?.Topologies).toEqual([{ Segments: { 'topology.weft.io/node': zoned.nodeId, 'topology.weft.io/zone': 'z9' } }]);
  });

  it('clones a snapshot into a new volume and registers that', async () => {
    await weftd.weft(['volume', 'create', 'base', '--size', '32MiB']);
    await weftd.weft(['snapshot', 'create', 'base', 'v1']);
    const result = await weftNomad(['create', 'base-copy', '--from-snapshot', 'base@v1', '--id', 'copy', '--fs-type', 'xfs', '--output', 'json']);
    expect(result.code).toBe(0);
    expect(json(result)).toMatchObject({ weft: { name: 'base-copy', sourceSnapshot: 'base@v1' }, nomad: { ID: 'copy', ExternalID: 'base-copy' } });
  });

  it('deletes the new Weft volume again when Nomad refuses it, and says why', async () => {
    await nomad.close();
    nomad = await FakeNomad.start({ token: TOKEN }); // no weft plugin running
    const result = await weftNomad(['create', 'orphan', '--size', '32MiB']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no CSI plugin named: weft could be found .*the new Weft volume "orphan" was deleted again/);
    expect((await weftd.weft(['volume', 'show', 'orphan'])).code).toBe(1);
  });

  it('creates nothing when Nomad already has a volume with that id', async () => {
    await new NomadClient({ address: nomad.address, token: TOKEN }, {}).registerCsiVolume({
      ID: 'taken', Name: 'taken', ExternalID: 'other', PluginID: 'weft', RequestedCapabilities: [{ AccessMode: 'single-node-writer', AttachmentMode: 'file-system' }],
    });
    const result = await weftNomad(['create', 'taken', '--size', '32MiB']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('weft: Nomad already has a volume "taken"; nothing was created\n');
    expect((await weftd.weft(['volume', 'show', 'taken'])).code).toBe(1);
  });
});

describe('weft nomad volume create, when Nomad\'s answer to the registration fails', () => {
  it('keeps the volume Nomad registered all the same (it was deleted under Nomad), and says so', async () => {
    nomad.registerFailsAfterCommit = 'rpc error: timed out while forwarding to the leader';
    const result = await weftNomad(['create', 'late-answer', '--size', '16MiB']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/created volume "late-answer" .*in Nomad as "late-answer" of plugin weft/);
    expect(nomad.volume('late-answer')).toMatchObject({ ExternalID: 'late-answer', PluginID: 'weft' });
    expect((await weftd.weft(['volume', 'show', 'late-answer'])).code).toBe(0);
  });
});

describe('weft nomad volume register', () => {
  it('registers an existing Weft volume with the capability asked for, once', async () => {
    await weftd.weft(['volume', 'create', 'raw', '--size', '32MiB']);
    const args = ['register', 'raw', '--id', 'raw-block', '--access-mode', 'multi-node-reader-only', '--attachment-mode', 'block-device'];
    expect((await weftNomad(args)).code).toBe(0);
    const volume = nomad.volume('raw-block');
    expect(volume).toMatchObject({ ExternalID: 'raw', RequestedCapabilities: [{ AccessMode: 'multi-node-reader-only', AttachmentMode: 'block-device' }] });
    expect(nomad.requests.find((request) => request.method === 'PUT')?.body).not.toHaveProperty('Volumes.0.MountOptions');
    const again = await weftNomad(args);
    expect(again.stdout).toBe('volume "raw" is already registered in Nomad as "raw-block"\n');
    expect(nomad.requests.filter((request) => request.method === 'PUT')).toHaveLength(1);
  });

  it('refuses a volume Weft does not have, before asking Nomad anything', async () => {
    const result = await weftNomad(['register', 'ghost']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^weft: .*ghost/);
    expect(nomad.requests).toEqual([]);
  });
});

describe('weft nomad volume list', () => {
  it('lists the weft plugin\'s volumes with their Weft volume, and the plugin\'s health', async () => {
    await weftNomad(['create', 'listed', '--size', '32MiB']);
    const client = new NomadClient({ address: nomad.address, token: TOKEN }, {});
    const capabilities = [{ AccessMode: 'single-node-writer' as const, AttachmentMode: 'file-system' as const }];
    await client.registerCsiVolume({ ID: 'lost', Name: 'lost', ExternalID: 'gone', PluginID: 'weft', RequestedCapabilities: capabilities });
    nomad.addPlugin('other');
    await client.registerCsiVolume({ ID: 'ebs', Name: 'ebs', ExternalID: 'vol-1', PluginID: 'other', RequestedCapabilities: capabilities });

    const text = await weftNomad(['list']);
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('plugin weft: controllers 1/1 healthy, nodes 1/1 healthy');
    expect(lines[1]).toMatch(/^ID\s+NAMESPACE\s+WEFT VOLUME\s+SIZE\s+CLASS\s+SCHEDULABLE\s+CLAIMED AS$/);
    expect(lines.slice(2).map((line) => line.split(/\s+/).slice(0, 4))).toEqual([
      ['listed', 'default', 'listed', '32'],
      ['lost', 'default', 'gone', '(missing)'],
    ]);

    const listed = json(await weftNomad(['list', '--output', 'json'])) as unknown as { plugin: { ID: string }; volumes: { nomad: { ID: string }; weft: { name: string } | null }[] };
    expect(listed.plugin.ID).toBe('weft');
    expect(listed.volumes.map((row) => [row.nomad.ID, row.weft?.name ?? null])).toEqual([['listed', 'listed'], ['lost', null]]);
  });

  it('says when the weft plugin is not running in Nomad', async () => {
    await nomad.close();
    nomad = await FakeNomad.start({ token: TOKEN });
    expect((await weftNomad(['list'])).stdout).toBe('plugin weft: not in Nomad (run the jobs in deploy/nomad)\nno volumes of plugin weft in Nomad\n');
  });
});

describe('weft nomad volume deregister', () => {
  it('makes Nomad forget the volume and keeps the Weft volume', async () => {
    await weftNomad(['create', 'kept', '--size', '32MiB']);
    const result = await weftNomad(['deregister', 'kept', '--force']);
    expect(result.code).toBe(0);
    expect(nomad.volume('kept')).toBeUndefined();
    expect(nomad.requests.at(-1)).toMatchObject({ method: 'DELETE', path: '/v1/volume/csi/kept', query: { force: 'true' } });
    expect((await weftd.weft(['volume', 'show', 'kept'])).code).toBe(0);
  });
});

describe('errors', () => {
  it.each([
    ['an access mode Nomad does not have', ['create', 'x', '--size', '1MiB', '--access-mode', 'single-node'], /--access-mode.*single-node/],
    ['a Nomad address without a scheme', ['list', '--nomad-addr', '127.0.0.1:4646'], /Nomad address "127.0.0.1:4646" is not an http\(s\) URL/],
    ['a create without a size', ['create', 'x'], /--size is required/],
  ])('treats %s as a usage error (exit 2)', async (_, args, message) => {
    const result = await weftd.weft(['nomad', 'volume', ...args], { env: env({ NOMAD_ADDR: nomad.address }) });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(nomad.requests).toEqual([]);
  });

  it('reports Nomad\'s refusal of a missing token', async () => {
    const result = await weftd.weft(['nomad', 'volume', 'list', '--nomad-addr', nomad.address], { env: env({ NOMAD_TOKEN: '' }) });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('weft: Nomad refused GET /v1/volumes (HTTP 403): Permission denied\n');
  });

  it('reports a Nomad that does not answer', async () => {
    const address = nomad.address;
    await nomad.close();
    const result = await weftd.weft(['nomad', 'volume', 'list'], { env: env({ NOMAD_ADDR: address }) });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`weft: cannot reach Nomad at ${address} (ECONNREFUSED); set --nomad-addr or NOMAD_ADDR\n`);
    nomad = await FakeNomad.start();
  });
});
