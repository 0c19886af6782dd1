// weftd's flag and config-file parsing, in-process: defaults, precedence, and a clear ConfigError
// (exit code 2) that names the flag or key and the value for every kind of bad input.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseConfig } from '../../fabric/config';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

afterAll(cleanupAll);

function configFile(text: string): string {
  const file = path.join(makeTempDir('weft-config-'), 'weftd.yaml');
  fs.writeFileSync(file, text);
  return file;
}

function parseError(argv: string[]): ConfigError {
  try {
    parseConfig(argv);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`parseConfig(${JSON.stringify(argv)}) did not fail`);
}

describe('service classes', () => {
  it('reads the objectives of each class, in base units, sorted by name', () => {
    const file = configFile('classes:\n  ssd: {objectives: {readLatencyP99: 2ms, write-latency-p99: 500us, availability: 99.9%}}\n  hdd: {objectives: {writeLatencyP99: 1.5s}}\n  scratch: {}\n');
    expect(parseConfig(['--config', file]).classes).toEqual([
      { name: 'hdd', objectives: { writeLatencyP99Seconds: 1.5 } },
      { name: 'scratch', objectives: {} },
      { name: 'ssd', objectives: { readLatencyP99Seconds: 0.002, writeLatencyP99Seconds: 0.0005, availabilityRatio: 0.999 } },
    ]);
  });

  it('has none without a config file', () => {
    expect(parseConfig([]).classes).toEqual([]);
  });
});

describe('--metrics-port off', () => {
  it('turns metrics off, as a flag or in the file', () => {
    expect(parseConfig(['--metrics-port', 'off']).metricsPort).toBe('off');
    expect(parseConfig(['--config', configFile('metricsPort: "off"\n')]).metricsPort).toBe('off');
  });

  it('refuses anything else that is not a port', () => {
    expect(parseError(['--metrics-port', 'of']).message).toBe('invalid --metrics-port "of": expected a port number from 0 to 65535 (0 = any free port), or off');
  });
});

describe('defaults', () => {
  it('serves a single-node fabric from ./weft-data on the standard ports', () => {
    const dataDir = path.resolve('weft-data');
    expect(parseConfig([])).toEqual({
      dataDir,
      nodeId: os.hostname(),
      listen: '127.0.0.1',
      advertise: '127.0.0.1',
      nbdPort: 10809,
      apiPort: 10810,
      metricsPort: 10811,
      pools: [{ class: 'default', path: dataDir }],
      logLevel: 'info',
      syncIntervalMs: 5000,
      replicaTimeoutMs: 600_000,
      store: { kind: 'embedded' },
      maxConnectionInflightBytes: 64 * 1024 ** 2,
      maxInflightBytes: 1024 ** 3,
      nbdMaxConnections: 16_384,
      classes: [],
    });
  });
});

describe('flags', () => {
  it('reads every flag', () => {
    const config = parseConfig([
      '--data-dir', '/srv/weft', '--node-id', 'node-1', '--listen', '0.0.0.0',
      '--nbd-port', '0', '--api-port', '20810', '--metrics-port=20811',
      '--pool', 'ssd:/mnt/nvme0:100GiB', '--pool', 'hdd:rel/disk', '--log-level', 'debug', '--sync-interval', '0',
      '--max-connection-inflight-bytes', '8MiB', '--max-inflight-bytes', '256M', '--store', 'etcd://10.0.0.1:2379,etcd-2.local:2379,[::1]:2379',
      '--advertise', 'node-1.example', '--zone', 'eu-1a', '--replica-timeout', '30', '--nbd-max-connections', '500',
    ]);
    expect(config).toEqual({
      dataDir: '/srv/weft',
      nodeId: 'node-1',
      listen: '0.0.0.0',
      advertise: 'node-1.example',
      zone: 'eu-1a',
      nbdPort: 0,
      apiPort: 20810,
      metricsPort: 20811,
      pools: [
        { class: 'ssd', path: '/mnt/nvme0', sizeBytes: 100 * 1024 ** 3 },
        { class: 'hdd', path: path.resolve('rel/disk') },
      ],
      logLevel: 'debug',
      syncIntervalMs: 0,
      replicaTimeoutMs: 30_000,
      store: { kind: 'etcd', endpoints: ['10.0.0.1:2379', 'etcd-2.local:2379', '[::1]:2379'] },
      maxConnectionInflightBytes: 8 * 1024 ** 2,
      maxInflightBytes: 256 * 1024 ** 2,
      nbdMaxConnections: 500,
      classes: [],
    });
  });

  it('advertises the listen address, or the host name when that is a wildcard, and refuses a wildcard', () => {
    expect(parseConfig(['--listen', '10.1.2.3']).advertise).toBe('10.1.2.3');
    expect(parseConfig(['--listen', '0.0.0.0']).advertise).toBe(os.hostname());
    expect(parseError(['--advertise', '0.0.0.0']).message).toMatch(/invalid --advertise "0\.0\.0\.0": expected the address others reach this node at, not a wildcard/);
    expect(parseError(['--advertise', 'no spaces']).message).toMatch(/invalid --advertise "no spaces": expected an IP address or a host name/);
  });

  it('puts the default pool in the data dir it is given', () => {
    expect(parseConfig(['--data-dir', '/srv/weft']).pools).toEqual([{ class: 'default', path: '/srv/weft' }]);
  });

  it('has no pool at all with --pool none (flag or config file), and only when none is given alone', () => {
    expect(parseConfig(['--pool', 'none']).pools).toEqual([]);
    expect(parseConfig(['--config', configFile('pool: none\n')]).pools).toEqual([]);
    expect(parseError(['--pool', 'none', '--pool', 'ssd:/mnt/a']).message).toMatch(/--pool \["none","ssd:\/mnt\/a"\]: none means no pool at all: give it alone/);
  });

  it.each([
    [['--nbd-port', '65536'], /--nbd-port "65536".*port number/],
    [['--api-port', 'http'], /--api-port "http"/],
    [['--metrics-port', '-1'], /--metrics-port "-1"/],
    [['--nbd-port', '1.5'], /--nbd-port "1.5"/],
    [['--pool', 'ssd'], /--pool "ssd".*CLASS:PATH/],
    [['--pool', 'ssd:'], /--pool "ssd:"/],
    [['--pool', ':/mnt/x'], /--pool ":\/mnt\/x"/],
    [['--pool', 'ssd:/a:1G:extra'], /--pool "ssd:\/a:1G:extra"/],
    [['--pool', 'ssd:/mnt/x:lots'], /--pool "ssd:\/mnt\/x:lots".*invalid size "lots"/],
    [['--pool', 'ssd:/mnt/x:0'], /--pool "ssd:\/mnt\/x:0".*a pool member is at least 1114112 bytes/],
    [['--pool', 'ssd:/mnt/x:100'], /--pool "ssd:\/mnt\/x:100".*a pool member is at least 1114112 bytes/],
    [['--pool', 'ssd:/a', '--pool', 'hdd:/a'], /--pool "\/a".*twice/],
    [['--log-level', 'loud'], /--log-level "loud".*info/],
    [['--sync-interval', '1.5'], /--sync-interval "1.5".*whole number of seconds/],
    [['--sync-interval', '-1'], /--sync-interval "-1"/],
    [['--replica-timeout', '0'], /--replica-timeout "0".*whole number of seconds from 1 to 86400/],
    [['--max-inflight-bytes', 'lots'], /--max-inflight-bytes "lots".*invalid size "lots"/],
    [['--max-connection-inflight-bytes', '0'], /--max-connection-inflight-bytes "0".*above 0/],
    [['--nbd-max-connections', '0'], /--nbd-max-connections "0".*whole number from 1 to 1000000/],
    [['--nbd-max-connections', 'many'], /--nbd-max-connections "many"/],
    [['--nbd-max-connections', '2000000'], /--nbd-max-connections "2000000"/],
    [['--node-id', 'no spaces'], /--node-id "no spaces"/],
    [['--listen', 'not an address'], /--listen "not an address"/],
    [['--store', 'zookeeper://a:1'], /--store "zookeeper:\/\/a:1".*expected "embedded" or etcd:\/\/HOST:PORT/],
    [['--store', 'etcd://'], /--store "etcd:\/\/"/],
    [['--store', 'etcd://a:2379,b'], /"b" is not HOST:PORT/],
    [['--store', 'etcd://a:70000'], /"a:70000" is not HOST:PORT/],
    [['--store', 'etcd://[nope]:2379'], /"\[nope\]:2379" is not HOST:PORT/],
    [['--store', 'etcd://a:1,a:1'], /given twice/],
    [['--data-dir', ''], /--data-dir ""/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--nbd-port'], /--nbd-port <n>' argument missing/],
    [['stray'], /too many arguments/],
  ])('refuses %j', (argv, message) => {
    const error = parseError(argv);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });
});

describe('--config', () => {
  it('reads camelCase and kebab-case keys, and flags override the file', () => {
    const file = configFile('dataDir: /srv/from-file\nnode-id: file-node\nnbdPort: 11809\napi-port: "11810"\npool:\n  - ssd:/mnt/a:1GiB\n  - ssd:/mnt/b\n');
    const config = parseConfig(['--config', file, '--node-id', 'flag-node', '--api-port', '0']);
    expect(config).toMatchObject({
      dataDir: '/srv/from-file',
      nodeId: 'flag-node',
      nbdPort: 11809,
      apiPort: 0,
      metricsPort: 10811,
      pools: [{ class: 'ssd', path: '/mnt/a', sizeBytes: 1024 ** 3 }, { class: 'ssd', path: '/mnt/b' }],
    });
  });

  it('reads the cluster store', () => {
    expect(parseConfig(['--config', configFile('store: etcd://127.0.0.1:2379\n')]).store).toEqual({ kind: 'etcd', endpoints: ['127.0.0.1:2379'] });
  });

  it('reads the in-flight caps as sizes or plain byte counts', () => {
    const file = configFile('max-connection-inflight-bytes: 16MiB\nmaxInflightBytes: 536870912\n');
    expect(parseConfig(['--config', file])).toMatchObject({ maxConnectionInflightBytes: 16 * 1024 ** 2, maxInflightBytes: 512 * 1024 ** 2 });
  });

  it('lets --pool flags replace the pools of the file', () => {
    const file = configFile('pool: [ssd:/mnt/a]\n');
    expect(parseConfig(['--config', file, '--pool', 'hdd:/mnt/h']).pools).toEqual([{ class: 'hdd', path: '/mnt/h' }]);
  });

  it('reads every value as the text it is, as a flag would be: node 007 in zone 1.10, not node 7 in zone 1.1', () => {
    expect(parseConfig(['--config', configFile('nodeId: 007\nzone: 1.10\n')])).toMatchObject({ nodeId: '007', zone: '1.10' });
  });

  it('accepts an empty file', () => {
    expect(parseConfig(['--config', configFile('')]).nbdPort).toBe(10809);
  });

  it.each([
    ['dataDir: /a\nflavour: vanilla\n', /unknown key "flavour" in .*weftd\.yaml/],
    ['dataDir: /a\ndata-dir: /b\n', /"data-dir" in .* second time/],
    ['nbdPort: 99999\n', /invalid nbdPort "99999" in .*weftd\.yaml: expected a port/],
    ['max-inflight-bytes: -1\n', /invalid max-inflight-bytes "-1" in .*weftd\.yaml/],
    ['metrics-port: http\n', /invalid metrics-port "http" in .*weftd\.yaml/],
    ['pool: 42\n', /invalid pool "42" in .*: expected CLASS:PATH\[:SIZE\]/],
    ['pool: [ssd]\n', /invalid pool "ssd" in /],
    ['store: etcd\n', /invalid store "etcd" in .*weftd\.yaml: expected "embedded" or etcd/],
    ['listen: [a, b]\n', /invalid listen \["a","b"\] in/],
    ['- just\n- a list\n', /must be a mapping/],
    ['dataDir: [unclosed\n', /not valid YAML/],
  ])('refuses %j', (text, message) => {
    const error = parseError(['--config', configFile(text)]);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });

  it.each([
    ['classes: [ssd]\n', /invalid classes in .*weftd\.yaml: expected a mapping of class names/],
    ['classes: {ssd: {objectives: {readLatencyP99: 2}}}\n', /invalid readLatencyP99 "2" for class ssd in classes in .*: expected a duration with its unit, e.g. 2ms/],
    ['classes: {ssd: {objectives: {writeLatencyP99: 2 ms}}}\n', /invalid writeLatencyP99 "2 ms" for class ssd .*: expected a duration/],
    ['classes: {ssd: {objectives: {readLatencyP99: 0ms}}}\n', /invalid readLatencyP99 "0ms" .*: expected a duration above 0/],
    ['classes: {hdd: {objectives: {writeLatencyP99: 20s}}}\n', /invalid writeLatencyP99 "20s" for class hdd .*: expected a duration above 0 and at most 10s \(the largest latency bucket/],
    ['classes: {ssd: {objectives: {availability: 100%}}}\n', /invalid availability "100%" for class ssd .*: expected a percentage above 0% and below 100%/],
    ['classes: {ssd: {objectives: {availability: 0.999}}}\n', /invalid availability "0.999" .*: expected a percentage, e.g. 99.9%/],
    ['classes: {ssd: {objectives: {latency: 2ms}}}\n', /unknown objective "latency" for class ssd .*: expected one of readLatencyP99, writeLatencyP99, availability/],
    ['classes: {ssd: {qos: {}}}\n', /unknown key "qos" for class ssd .*: expected objectives/],
    ['classes: {"s s d": {objectives: {}}}\n', /invalid class name "s s d" in classes in/],
  ])('refuses the classes of %j', (text, message) => {
    const error = parseError(['--config', configFile(text)]);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(message);
  });

  it('refuses a file that cannot be read', () => {
    expect(parseError(['--config', '/nonexistent/weftd.yaml']).message).toMatch(/cannot read --config "\/nonexistent\/weftd.yaml"/);
  });
});
