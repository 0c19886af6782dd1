// weftd's CSI and topology settings: --csi-endpoint, --csi-role, --nomad-addr, --zone and
// --zone-from-node-label, as flags and as config-file keys, and the ConfigError (exit code 2) each
// bad value gets.

import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, parseConfig } from '../../fabric/config';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

afterAll(cleanupAll);

function parseError(argv: string[]): string {
  try {
    parseConfig(argv);
  } catch (error) {
    if (error instanceof ConfigError && error.exitCode === 2) return error.message;
    throw error;
  }
  throw new Error(`parseConfig(${JSON.stringify(argv)}) did not fail`);
}

it('runs no CSI driver and has no zone unless asked', () => {
  const config = parseConfig([]);
  expect(config.csi).toBeUndefined();
  expect(config.zone).toBeUndefined();
});

it('serves both CSI roles by default once an endpoint is given', () => {
  expect(parseConfig(['--csi-endpoint', 'unix:///csi/csi.sock'])).toMatchObject({ csi: { endpoint: 'unix:///csi/csi.sock', role: 'both' } });
  expect(parseConfig(['--csi-endpoint', 'unix:///csi/csi.sock', '--csi-role', 'node', '--zone', 'eu-1a'])).toMatchObject({
    csi: { role: 'node' },
    zone: 'eu-1a',
  });
});

it('gives the CSI node service a Nomad address to look allocations up at, only when asked', () => {
  expect(parseConfig(['--csi-endpoint', 'unix:///csi/csi.sock']).csi).not.toHaveProperty('nomadAddr');
  expect(parseConfig(['--csi-endpoint', 'unix:///csi/csi.sock', '--csi-role', 'node', '--nomad-addr', 'http://10.0.0.7:4646']).csi).toEqual({
    endpoint: 'unix:///csi/csi.sock',
    role: 'node',
    nomadAddr: 'http://10.0.0.7:4646',
  });
  const file = path.join(makeTempDir('weft-config-'), 'weftd.yaml');
  fs.writeFileSync(file, 'csi-endpoint: unix:///csi/csi.sock\nnomad-addr: https://nomad.example:4646\n');
  expect(parseConfig(['--config', file]).csi?.nomadAddr).toBe('https://nomad.example:4646');
});

it('reads the same settings from the config file, in either key style', () => {
  const file = path.join(makeTempDir('weft-config-'), 'weftd.yaml');
  fs.writeFileSync(file, 'csi-endpoint: unix:///run/weft/csi.sock\ncsiRole: controller\nzone: rack-3\n');
  expect(parseConfig(['--config', file])).toMatchObject({ csi: { endpoint: 'unix:///run/weft/csi.sock', role: 'controller' }, zone: 'rack-3' });
  expect(parseConfig(['--config', file, '--csi-role', 'both']).csi?.role).toBe('both');
});

it('takes the zone from a Kubernetes node label instead, as a flag or a config-file key', () => {
  const config = parseConfig(['--zone-from-node-label', 'topology.kubernetes.io/zone']);
  expect([config.zoneFromNodeLabel, config.zone]).toEqual(['topology.kubernetes.io/zone', undefined]);
  const file = path.join(makeTempDir('weft-config-'), 'weftd.yaml');
  fs.writeFileSync(file, 'zone-from-node-label: rack\n');
  expect(parseConfig(['--config', file]).zoneFromNodeLabel).toBe('rack');
});

it.each([
  [['--zone', 'eu-1a', '--zone-from-node-label', 'topology.kubernetes.io/zone'], /invalid --zone-from-node-label "topology.kubernetes.io\/zone": the zone comes either from --zone or from a node label: give one/],
  [['--zone-from-node-label', 'topology.kubernetes.io/'], /invalid --zone-from-node-label "topology.kubernetes.io\/": expected a Kubernetes label key/],
  [['--zone-from-node-label', 'Topology.example/zone'], /invalid --zone-from-node-label/],
  [['--zone-from-node-label', 'zone name'], /invalid --zone-from-node-label/],
  [['--csi-endpoint', '/csi/csi.sock'], /invalid --csi-endpoint "\/csi\/csi.sock": expected unix:\/\/\/ABSOLUTE\/PATH/],
  [['--csi-endpoint', 'tcp://127.0.0.1:1'], /invalid --csi-endpoint/],
  [['--csi-endpoint', 'unix:///c.sock', '--csi-role', 'all'], /invalid --csi-role "all": expected one of controller, node, both/],
  [['--csi-role', 'node'], /invalid --csi-role "node": a CSI role needs a CSI endpoint/],
  [['--nomad-addr', 'http://127.0.0.1:4646'], /invalid --nomad-addr "http:\/\/127.0.0.1:4646": the CSI node service looks allocations up: it needs a CSI endpoint/],
  [['--csi-endpoint', 'unix:///c.sock', '--nomad-addr', '127.0.0.1:4646'], /invalid --nomad-addr "127.0.0.1:4646": expected the http\(s\) URL of Nomad's HTTP API/],
  [['--csi-endpoint', 'unix:///c.sock', '--csi-role', 'controller', '--nomad-addr', 'http://127.0.0.1:4646'], /invalid --nomad-addr .*: only the CSI node service looks allocations up/],
  [['--zone', '-east'], /invalid --zone "-east"/],
  [['--zone', 'z'.repeat(64)], /invalid --zone/],
])('refuses %j', (argv, message) => {
  expect(parseError(argv)).toMatch(message);
});
