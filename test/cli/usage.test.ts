// Tests of the `weft` process where no weftd is needed: help on every command, usage errors
// (exit 2) and an unreachable endpoint (exit 1), each failure as one "weft: <reason>" line.

import * as net from 'node:net';
import { freePort } from '../helpers/free-port';
import { errorLines, runWeft } from './run-weft';

const COMMANDS = [
  'volume', 'volume create', 'volume list', 'volume show', 'volume resize', 'volume delete', 'volume verify',
  'volume revert', 'snapshot', 'snapshot create', 'snapshot list', 'snapshot delete', 'pool', 'pool list', 'class', 'class list', 'node', 'node info',
];

describe('weft --help', () => {
  it('describes the global options and every group', async () => {
    const run = await runWeft(['--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const text of ['--endpoint <host:port>', 'WEFT_ENDPOINT', '--timeout <duration>', 'WEFT_TIMEOUT', '--output <format>', 'volume', 'snapshot', 'pool', 'node']) {
      expect(run.stdout).toContain(text);
    }
  });

  it.concurrent.each(COMMANDS)('weft %s --help explains the command', async (command) => {
    const run = await runWeft([...command.split(' '), '--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain(`Usage: weft ${command}`);
  });
});

it('weft volume delete --help says that snapshots outlive their volume', async () => {
  const text = (await runWeft(['volume', 'delete', '--help'])).stdout.replace(/\s+/g, ' '); // as wrapped
  expect(text).toContain('its snapshots stay until deleted');
  expect(text).not.toMatch(/refused while .*has snapshots/);
});

describe('usage errors exit 2 with one line', () => {
  it.concurrent.each([
    [[], /^weft: missing command: weft takes one of volume, snapshot, pool, class, attachment, node, nomad/],
    [['volume'], /^weft: missing command: weft volume takes one of create, list, show, resize, delete, verify, revert/],
    [['volume', 'frobnicate'], /^weft: unknown command 'frobnicate'/],
    [['volum'], /^weft: unknown command 'volum' \(Did you mean volume\?\)$/],
    [['volume', 'list', '--bogus'], /^weft: unknown option '--bogus'/],
    [['volume', 'show'], /^weft: missing required argument 'name'/],
    [['volume', 'show', 'a', 'b'], /^weft: too many arguments for 'show'/],
    [['volume', 'create', 'data'], /^weft: --size is required \(or --from-snapshot VOL@SNAP/],
    [['volume', 'create', 'data', '--size', '12XB'], /^weft: --size: invalid size "12XB": use a number with an optional unit/],
    [['volume', 'create', 'data', '--size', '0'], /^weft: --size must be greater than 0$/],
    [['volume', 'create', 'a/b', '--size', '1G'], /^weft: name "a\/b" is invalid/],
    [['volume', 'create', 'c', '--from-snapshot', 'a@b', '--class', '../x'], /^weft: --class "\.\.\/x" is invalid/],
    [['volume', 'create', 'c', '--from-snapshot', 'nosnap'], /^weft: "nosnap" does not name a snapshot: use VOLUME@SNAPSHOT$/],
    [['volume', 'resize', 'data'], /^weft: required option '--size <size>' not specified$/],
    [['volume', 'revert', 'data'], /^weft: "data" does not name a snapshot/],
    [['snapshot', 'create', 'data'], /^weft: missing required argument 'snap'/],
    [['snapshot', 'create', 'data', 'csi-clone.0123456789abcdef'], /^weft: snapshot name "csi-clone\.0123456789abcdef" has the form the CSI driver gives its hidden clone snapshots/],
    [['snapshot', 'delete', 'data@'], /^weft: snapshot is required$/],
    [['--output', 'yaml', 'volume', 'list'], /^weft: option '--output <format>' argument 'yaml' is invalid/],
    [['--endpoint', 'localhost', 'volume', 'list'], /^weft: --endpoint "localhost" is invalid: use HOST:PORT/],
    [['--timeout', '0', 'volume', 'list'], /^weft: --timeout "0" is invalid: use a duration such as 30s, 5m or 1h/],
    // An option given twice is refused, not taken at its last value (a 1 TiB volume here).
    [['volume', 'create', 'data', '--size', '1GiB', '--size', '1TiB'], /^weft: option '--size <size>' argument '1TiB' is invalid\. --size was given already \(1GiB\): give it once$/],
    [['--output', 'json', '--output', 'table', 'volume', 'list'], /--output was given already \(json\)/],
    [['volume', 'stats', '--interval', '1s', '--interval', '2s'], /--interval was given already \(1s\)/],
  ])('weft %j', async (args, message) => {
    const run = await runWeft(args as string[]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(errorLines(run)).toHaveLength(1);
    expect(errorLines(run)[0]).toMatch(message);
  });
});

describe('an endpoint where no weftd listens', () => {
  it.each([['volume', 'list'], ['node', 'info'], ['volume', 'verify', 'data']])('weft %s exits 1: cannot reach weftd', async (...args) => {
    const endpoint = `127.0.0.1:${await freePort()}`;
    const run = await runWeft(['--endpoint', endpoint, ...args]);
    expect(run).toMatchObject({ code: 1, stdout: '', stderr: `weft: cannot reach weftd at ${endpoint} (connection refused)\n` });
  });

  it('is taken from WEFT_ENDPOINT when --endpoint is not given', async () => {
    const endpoint = `127.0.0.1:${await freePort()}`;
    const run = await runWeft(['pool', 'list'], { env: { WEFT_ENDPOINT: endpoint } });
    expect(run).toMatchObject({ code: 1, stderr: `weft: cannot reach weftd at ${endpoint} (connection refused)\n` });
  });
});

describe('a weftd that takes the connection and never answers (stuck, or its host gone)', () => {
  /** Runs fn with the endpoint of a server that accepts connections and says nothing. */
  async function withSilentServer(fn: (endpoint: string) => Promise<void>): Promise<void> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await fn(`127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  }

  it.each([[['--timeout', '1s']], [[]]])('weft %j volume list gives up after --timeout (WEFT_TIMEOUT), exit 1', (flags) =>
    withSilentServer(async (endpoint) => {
      const run = await runWeft(['--endpoint', endpoint, ...flags, 'volume', 'list'], { env: { WEFT_TIMEOUT: '1.5' } });
      const seconds = flags.length > 0 ? 1 : 1.5;
      expect(run).toMatchObject({ code: 1, stdout: '', stderr: `weft: weftd at ${endpoint} did not answer within ${seconds} s\n` });
    }));

  it('weft volume create, given up, says the change may still be made', () =>
    withSilentServer(async (endpoint) => {
      const run = await runWeft(['--endpoint', endpoint, '--timeout', '1s', 'volume', 'create', 'v', '--size', '1MiB']);
      expect(run).toMatchObject({
        code: 1,
        stdout: '',
        stderr: `weft: weftd at ${endpoint} did not answer within 1 s; CreateVolume may still be done there: check before trying it again\n`,
      });
    }));
});
