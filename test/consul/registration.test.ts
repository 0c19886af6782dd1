// weftd --consul-addr against FakeConsulAgent (no Consul can be installed here): a real weftd
// registers weft-nbd, weft-api and weft-metrics with checks on the ports it bound, deregisters them on
// SIGTERM, and registers later when the agent only comes up after it. Plus the shipped Prometheus
// scrape config (deploy/prometheus/consul-sd.yml) and --consul-addr's validation.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { FakeConsulAgent, type RegisteredService } from '../helpers/fake-consul-agent';
import { freePort } from '../helpers/free-port';
import { promtoolCheckConfig } from '../helpers/promtool';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, REPO_ROOT, run, startWeftd, WEFTD_BIN } from '../helpers/weftd';

jest.setTimeout(60_000);

const agents: FakeConsulAgent[] = [];
afterEach(async () => {
  await cleanupAll();
  await Promise.all(agents.splice(0).map((agent) => agent.close()));
});

async function startAgent(port?: number, aclToken?: string): Promise<FakeConsulAgent> {
  const agent = await FakeConsulAgent.start(port, aclToken);
  agents.push(agent);
  return agent;
}

const NODE = 'consul-node-1';
const weftdWith = (consulAddr: string, env?: NodeJS.ProcessEnv) =>
  startWeftd({ extraArgs: ['--node-id', NODE, '--zone', 'z1', '--consul-addr', consulAddr], ...(env ? { env: { ...withoutConsulToken(process.env), ...env } } : {}) });

function withoutConsulToken(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { CONSUL_HTTP_TOKEN: _token, CONSUL_HTTP_TOKEN_FILE: _file, ...rest } = env;
  return rest;
}
const ids = ['weft-nbd', 'weft-api', 'weft-metrics'].map((name) => `${name}-${NODE}`);

function tcpConnects(target: string): Promise<boolean> {
  const [host, port] = target.split(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host, () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

it('registers NBD, API and metrics with checks on the ports weftd bound, and deregisters them on SIGTERM', async () => {
  const agent = await startAgent();
  const weftd = await weftdWith(agent.address);
  await waitFor(() => agent.services.size === 3, 10_000, 50);
  const info = JSON.parse((await weftd.weft(['node', 'info', '--output', 'json'])).stdout) as { nbdPort: number; apiPort: number; metricsPort: number };
  expect(info).toMatchObject({ nbdPort: weftd.nbdPort, apiPort: weftd.apiPort, metricsPort: weftd.metricsPort });

  const service = (id: string) => agent.services.get(id) as RegisteredService;
  const expected = { 'weft-nbd': weftd.nbdPort, 'weft-api': weftd.apiPort, 'weft-metrics': weftd.metricsPort };
  for (const [name, port] of Object.entries(expected)) {
    expect(service(`${name}-${NODE}`)).toMatchObject({
      ID: `${name}-${NODE}`, Name: name, Address: '127.0.0.1', Port: port,
      Tags: [`node=${NODE}`, 'zone=z1'], Meta: { node_id: NODE, zone: 'z1', version: expect.stringMatching(/^\d+\.\d+\.\d+/) },
      Check: { Interval: '10s', DeregisterCriticalServiceAfter: '30m' },
    });
  }
  expect(service(ids[0]).Check?.TCP).toBe(`127.0.0.1:${weftd.nbdPort}`);
  expect(service(ids[1]).Check?.TCP).toBe(`127.0.0.1:${weftd.apiPort}`);
  expect(service(ids[2]).Check?.HTTP).toBe(`http://127.0.0.1:${weftd.metricsPort}/healthz`);
  // What the agent would check answers: both TCP checks connect, /healthz answers 200.
  expect(await tcpConnects(service(ids[0]).Check?.TCP as string)).toBe(true);
  expect(await tcpConnects(service(ids[1]).Check?.TCP as string)).toBe(true);
  expect((await fetch(service(ids[2]).Check?.HTTP as string, { headers: { connection: 'close' } })).status).toBe(200);
  // The agent's own listing, as `consul services` or Nomad would read it.
  const listed = (await (await fetch(`http://${agent.address}/v1/agent/services`, { headers: { connection: 'close' } })).json()) as Record<string, { Service: string; Port: number }>;
  expect(Object.keys(listed).sort()).toEqual([...ids].sort());

  expect(await weftd.stop()).toBe(0);
  expect(agent.services.size).toBe(0);
  expect(agent.log.filter((line) => line.startsWith('PUT /v1/agent/service/deregister/')).sort()).toEqual(
    ids.map((id) => `PUT /v1/agent/service/deregister/${id} 200`).sort(),
  );
  // Every registration was accepted as Consul would accept it.
  expect(agent.log.filter((line) => line.startsWith('PUT /v1/agent/service/register'))).toEqual(Array(3).fill('PUT /v1/agent/service/register 200'));
});

it('registers again once the agent has lost its services (restarted without its data), and deregisters them on SIGTERM', async () => {
  const agent = await startAgent();
  const weftd = await weftdWith(agent.address);
  await waitFor(() => agent.services.size === 3, 10_000, 50);
  const port = agent.port;
  await agent.close();
  agents.splice(agents.indexOf(agent), 1);
  const restarted = await startAgent(port); // the same address, nothing registered
  await waitFor(() => restarted.services.size === 3, 20_000, 100);
  expect([...restarted.services.keys()].sort()).toEqual([...ids].sort());
  expect(weftd.logs()).toMatch(/no longer lists these services/);
  expect(await weftd.stop()).toBe(0);
  expect(restarted.services.size).toBe(0);
});

it('starts while the agent is down, warns, and registers once the agent comes up', async () => {
  const port = await freePort();
  const weftd = await weftdWith(`127.0.0.1:${port}`);
  await waitFor(() => /cannot register with the Consul agent/.test(weftd.logs()), 10_000, 50);
  const agent = await startAgent(port);
  await waitFor(() => agent.services.size === 3, 15_000, 100);
  expect(agent.services.get(ids[2])?.Port).toBe(weftd.metricsPort);
  expect(await weftd.stop()).toBe(0);
  expect(agent.services.size).toBe(0);
});

describe('an agent that enforces ACLs', () => {
  const TOKEN = 'b1gs3cr3t-7c1e-4a52-9d1e-acl';

  it('registers and deregisters with the token of CONSUL_HTTP_TOKEN', async () => {
    const agent = await startAgent(undefined, TOKEN);
    const weftd = await weftdWith(agent.address, { CONSUL_HTTP_TOKEN: TOKEN });
    await waitFor(() => agent.services.size === 3, 10_000, 50);
    expect(await weftd.stop()).toBe(0);
    expect(agent.services.size).toBe(0);
    expect(agent.log.filter((line) => line.endsWith(' 403'))).toEqual([]);
  });

  it('reads the token from CONSUL_HTTP_TOKEN_FILE, which comes before CONSUL_HTTP_TOKEN', async () => {
    const agent = await startAgent(undefined, TOKEN);
    const file = path.join(makeTempDir(), 'consul-token');
    fs.writeFileSync(file, `${TOKEN}\n`);
    const weftd = await weftdWith(agent.address, { CONSUL_HTTP_TOKEN_FILE: file, CONSUL_HTTP_TOKEN: 'not-the-token' });
    await waitFor(() => agent.services.size === 3, 10_000, 50);
    expect(await weftd.stop()).toBe(0);
    expect(agent.services.size).toBe(0);
  });

  it('without a token: refused with 403, says what to set, serves on and registers nothing', async () => {
    const agent = await startAgent(undefined, TOKEN);
    const weftd = await weftdWith(agent.address, {});
    await waitFor(() => /403: the agent enforces ACLs; set CONSUL_HTTP_TOKEN/.test(weftd.logs()), 10_000, 50);
    expect(agent.services.size).toBe(0);
    expect(JSON.parse((await weftd.weft(['node', 'info', '--output', 'json'])).stdout)).toMatchObject({ nodeId: NODE });
    expect(await weftd.stop()).toBe(0);
  });

  it('with a token the agent does not know: says the token is refused', async () => {
    const agent = await startAgent(undefined, TOKEN);
    const weftd = await weftdWith(agent.address, { CONSUL_HTTP_TOKEN: 'stale-token' });
    await waitFor(() => /403: the ACL token of CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE lacks service:write/.test(weftd.logs()), 10_000, 50);
    expect(agent.services.size).toBe(0);
    expect(await weftd.stop()).toBe(0);
  });

  it.each([
    ['a missing file', (dir: string) => path.join(dir, 'absent'), /cannot read the Consul token file CONSUL_HTTP_TOKEN_FILE=.*absent: ENOENT/],
    ['an empty file', (dir: string) => {
      const file = path.join(dir, 'empty');
      fs.writeFileSync(file, '\n');
      return file;
    }, /the Consul token file CONSUL_HTTP_TOKEN_FILE=.*empty is empty/],
  ])('refuses to start with %s in CONSUL_HTTP_TOKEN_FILE', async (_case, makeFile, message) => {
    const agent = await startAgent(undefined, TOKEN);
    const dir = makeTempDir();
    const result = await run(WEFTD_BIN, ['--data-dir', path.join(dir, 'data'), '--nbd-port', '0', '--api-port', '0', '--metrics-port', '0', '--listen', '127.0.0.1', '--consul-addr', agent.address], {
      env: { ...withoutConsulToken(process.env), CONSUL_HTTP_TOKEN_FILE: makeFile(dir) },
      timeoutMs: 30_000,
    });
    expect(result.code).not.toBe(0);
    expect(result.signal).toBeNull();
    expect(result.stderr).toMatch(message);
    expect(agent.log).toEqual([]);
  });
});

it('deregisters every service at once at stop: an agent that hangs delays the stop by one call, not three', async () => {
  const agent = await startAgent();
  const weftd = await weftdWith(agent.address);
  await waitFor(() => agent.services.size === 3, 10_000, 50);
  agent.hangDeregistrations = true;
  const stopped = weftd.stop();
  await waitFor(() => agent.hungDeregistrations === 3, 4_000, 20); // within one call's timeout (5 s)
  expect(await stopped).toBe(0);
  expect(weftd.logs()).toMatch(/could not deregister from Consul: the agent drops it once its check has been critical for 30m/);
});

it('registers no weft-metrics service with --metrics-port off', async () => {
  const agent = await startAgent();
  const weftd = await startWeftd({ extraArgs: ['--node-id', NODE, '--consul-addr', agent.address, '--metrics-port', 'off'] });
  await waitFor(() => agent.services.size === 2, 10_000, 50);
  expect([...agent.services.keys()].sort()).toEqual(ids.slice(0, 2).sort());
  expect(agent.services.get(ids[0])).not.toHaveProperty('Tags', expect.arrayContaining([expect.stringMatching(/^zone=/)]));
  await weftd.stop();
});

it.each(['consul', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:99999', 'http://127.0.0.1:8500', '[nope]:8500', ':8500'])('refuses --consul-addr %s with a clear error', async (value) => {
  const dataDir = path.join(makeTempDir(), 'data');
  const result = await run(WEFTD_BIN, ['--data-dir', dataDir, '--consul-addr', value]);
  expect(result.code).toBe(2);
  expect(result.stderr).toContain(`invalid --consul-addr ${JSON.stringify(value)}: expected HOST:PORT of a Consul agent, e.g. 127.0.0.1:8500`);
  expect(fs.existsSync(dataDir)).toBe(false);
});

describe('deploy/prometheus/consul-sd.yml', () => {
  const file = path.join(REPO_ROOT, 'deploy', 'prometheus', 'consul-sd.yml');
  const config = YAML.parse(fs.readFileSync(file, 'utf8')) as { scrape_configs: Record<string, unknown>[] };
  const [job] = config.scrape_configs;

  it('discovers weft-metrics through Consul and labels each target with the node id weftd registers', () => {
    expect(job.consul_sd_configs).toEqual([expect.objectContaining({ services: ['weft-metrics'] })]);
    // The Meta key weftd sends (Meta.node_id) is what the relabelling reads.
    expect(job.relabel_configs).toContainEqual({ source_labels: ['__meta_consul_service_metadata_node_id'], target_label: 'node' });
  });

  // Debian's promtool is built without Consul SD ("Disable Consul SD until its Debian package is back in
  // shape"), so it refuses consul_sd_configs: the rest of the file is checked with the same targets static.
  it('passes promtool check config, consul_sd_configs aside', async () => {
    expect(await promtoolCheckConfig(config)).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
  });
});
