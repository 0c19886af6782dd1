// weftd as a process: it starts and reports ready, serves NBD, the API and /metrics, refuses bad
// flags (exit 2) and busy ports or foreign data dirs (exit 1) without side effects, stops on SIGTERM.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { cleanupAll, makeTempDir, run, startWeftd, WeftdHandle, WEFTD_BIN, type RunResult } from '../helpers/weftd';
import { waitFor } from '../helpers/wait-for';

afterAll(cleanupAll);

/** Runs weftd to its exit (for the cases where it must refuse to start). */
function weftdExpectingExit(args: string[]): Promise<RunResult> {
  return run(WEFTD_BIN, args, { timeoutMs: 15_000 });
}

const FREE_PORTS = ['--nbd-port', '0', '--api-port', '0', '--metrics-port', '0', '--listen', '127.0.0.1'];

function qemuIo(uri: string, ...commands: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((command) => ['-c', command]), uri]);
}

async function createVolume(node: WeftdHandle, name: string, size: string): Promise<void> {
  const created = await node.weft(['volume', 'create', name, '--size', size]);
  expect(created).toMatchObject({ code: 0 });
}

/** The value of one series in a Prometheus exposition, or undefined. */
function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('a running weftd', () => {
  let node: WeftdHandle;

  beforeAll(async () => {
    node = await startWeftd();
    console.log(`weftd ready in ${node.startupMs} ms (process start to "weftd ready")`);
  });

  it('reports ready with its ports, node id and data dir', () => {
    for (const port of [node.nbdPort, node.apiPort, node.metricsPort]) expect(port).toBeGreaterThan(0);
    expect(new Set([node.nbdPort, node.apiPort, node.metricsPort]).size).toBe(3);
    expect(node.nodeId).not.toBe('');
    expect(node.logs()).toContain(`"dataDir":"${node.dataDir}"`);
  });

  it('counts I/O per volume on /metrics', async () => {
    await createVolume(node, 'metered', '64MiB');
    expect(await qemuIo(node.nbdUri('metered'), 'write -P 0xab 0 1M', 'flush', 'read -P 0xab 0 1M')).toMatchObject({ code: 0 });

    const response = await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`);
    expect(response.status).toBe(200);
    const exposition = await response.text();
    expect(sample(exposition, 'weft_volume_operations_total{volume="metered",operation="write"}')).toBeGreaterThan(0);
    expect(sample(exposition, 'weft_volume_operations_total{volume="metered",operation="flush"}')).toBeGreaterThan(0);
    expect(sample(exposition, 'weft_volume_bytes_total{volume="metered",direction="write"}')).toBe(1024 * 1024);
    expect(sample(exposition, 'weft_volume_bytes_total{volume="metered",direction="read"}')).toBeGreaterThanOrEqual(1024 * 1024);
    expect(sample(exposition, 'weft_volume_operation_seconds_count{volume="metered",operation="write"}')).toBeGreaterThan(0);
    expect(exposition).toMatch(/^weft_pool_capacity_bytes\{class="default"\} [1-9]/m);
  });

  it('answers 404 next to /metrics', async () => {
    expect((await fetch(`http://127.0.0.1:${node.metricsPort}/`)).status).toBe(404);
  });

  it('keeps flushed data across a graceful restart and a kill -9', async () => {
    await createVolume(node, 'durable', '16MiB');
    expect(await qemuIo(node.nbdUri('durable'), 'write -P 0x5a 0 64k', 'flush')).toMatchObject({ code: 0 });
    await node.restart();
    expect(await qemuIo(node.nbdUri('durable'), 'read -P 0x5a 0 64k', 'write -P 0xa5 64k 64k', 'flush')).toMatchObject({ code: 0 });
    await node.kill9();
    await node.start();
    expect(await qemuIo(node.nbdUri('durable'), 'read -P 0x5a 0 64k', 'read -P 0xa5 64k 64k')).toMatchObject({ code: 0 });
  });

  it('stops cleanly on SIGTERM, closing the connections it still has', async () => {
    const idle = net.connect(node.nbdPort, '127.0.0.1');
    await new Promise((resolve) => idle.once('connect', resolve));
    const closed = new Promise((resolve) => idle.once('close', resolve));
    idle.on('error', () => undefined).resume(); // read, or the server's FIN is never seen
    expect(await node.stop()).toBe(0);
    await closed;
    expect(node.logs()).toContain('"msg":"weftd stopped"');
  });
});

// As PID 1 of its own PID namespace (a container without an init), a process cannot kill itself with
// a signal it has no handler for: it then exits with 128 + the signal's number.
it.each([
  ['by the signal', [] as string[], [null, 'SIGTERM']],
  ['with 143 as PID 1 of its own PID namespace (a container)', ['unshare', '--pid', '--fork', '--kill-child'], [143, null]],
])('a SIGTERM during startup (its store not answering) ends it, saying so, %s', async (_how, wrapper, exit) => {
  // An "etcd" that accepts connections and never answers: the start waits on it.
  const sockets: net.Socket[] = [];
  const silent = net.createServer((socket) => sockets.push(socket.on('error', () => undefined)));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const dataDir = path.join(makeTempDir(), 'data');
    const [command, ...args] = [...wrapper, WEFTD_BIN, '--data-dir', dataDir, ...FREE_PORTS, '--store', `etcd://127.0.0.1:${port}`];
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
    await waitFor(async () => sockets.length > 0, 10_000, 20);
    const weftdPid = wrapper.length === 0 ? child.pid! : Number((await run('pgrep', ['-P', String(child.pid)])).stdout.trim());
    process.kill(weftdPid, 'SIGTERM');
    expect(await exited).toEqual(exit);
    expect(output).toContain('"msg":"signal during startup: exiting before the node serves"');
    expect(output).toContain('weftd: stopped by SIGTERM before it was ready');
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

it('a stop whose last checkpoint fails (its data dir full) exits 1, not 0: it was not a clean stop', async () => {
  const dataDir = makeTempDir('weft-full-data-');
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'weft-test-full', dataDir]);
  if (mounted.code !== 0) throw new Error(`mount tmpfs: ${mounted.stderr}`);
  try {
    const node = await startWeftd({ dataDir, pools: [`default:${makeTempDir('weft-pool-')}:256MiB`] });
    await createVolume(node, 'filled', '64MiB');
    expect(await qemuIo(node.nbdUri('filled'), 'write -P 0x3c 0 16M', 'flush')).toMatchObject({ code: 0 });
    await run('dd', ['if=/dev/zero', `of=${path.join(dataDir, 'filler')}`, 'bs=64k']); // until ENOSPC
    expect(await node.stop()).toBe(1);
    expect(node.logs()).toMatch(/"msg":"failed to stop cleanly"/);
    expect(node.logs()).toMatch(/"msg":"stop failed"/);
    expect(node.logs()).not.toMatch(/"msg":"weftd stopped"/);
  } finally {
    await run('umount', ['-l', dataDir]);
  }
});

it('a --pool size other than the one its existing backing file was made with is said to be ignored; the same one says nothing', async () => {
  const dataDir = path.join(makeTempDir(), 'data');
  const poolDir = makeTempDir('weft-pool-');
  const capacity = async (node: WeftdHandle) => (JSON.parse((await node.weft(['--output', 'json', 'pool', 'list'])).stdout) as { capacityBytes: number }[])[0].capacityBytes;
  const sizes: number[] = [];
  for (const size of ['64MiB', '64MiB', '128MiB']) {
    const node = await startWeftd({ dataDir, pools: [`default:${poolDir}:${size}`] });
    sizes.push(await capacity(node));
    expect(await node.stop()).toBe(0);
    const warned = node.logs().includes('"msg":"the pool\'s backing file exists: it keeps the size it was made with, not the one --pool gives"');
    expect([size, warned]).toEqual([size, size === '128MiB']);
  }
  expect(new Set(sizes).size).toBe(1);
});

describe('bad flags and config keys', () => {
  it.each([
    [['--nbd-port', '70000'], /--nbd-port "70000"/],
    [['--api-port', 'x'], /--api-port "x"/],
    [['--pool', 'ssd'], /--pool "ssd"/],
    [['--pool', 'ssd:/tmp/weft-nowhere:12 parsecs'], /invalid size "12 parsecs"/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
  ])('%j: exit 2, one line on stderr, nothing created', async (badArgs, message) => {
    const dataDir = path.join(makeTempDir(), 'data');
    const result = await weftdExpectingExit(['--data-dir', dataDir, ...FREE_PORTS, ...badArgs]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('refuses an unknown key in the config file', async () => {
    const dir = makeTempDir();
    const config = path.join(dir, 'weftd.yaml');
    fs.writeFileSync(config, `dataDir: ${dir}/data\nreplicas: 3\n`);
    const result = await weftdExpectingExit(['--config', config, ...FREE_PORTS]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown key "replicas"/);
    expect(fs.existsSync(path.join(dir, 'data'))).toBe(false);
  });
});

describe('--config', () => {
  it('starts from a YAML file, and flags override it', async () => {
    const dir = makeTempDir();
    const config = path.join(dir, 'weftd.yaml');
    fs.writeFileSync(config, [`data-dir: ${dir}/from-file`, 'nodeId: file-node', 'listen: 127.0.0.1', 'nbdPort: 0', 'api-port: 0', 'metricsPort: 0', 'log-level: info', ''].join('\n'));
    const node = new WeftdHandle(path.join(dir, 'from-file'), ['--config', config, '--node-id', 'flag-node']);
    await node.start();
    expect(node.nodeId).toBe('flag-node');
    expect(node.logs()).toContain(`"dataDir":"${dir}/from-file"`);
    expect(await node.stop()).toBe(0);
  });
});

describe('refusing to start', () => {
  let blocker: net.Server;
  let busyPort: number;

  beforeAll(async () => {
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    busyPort = (blocker.address() as net.AddressInfo).port;
  });

  afterAll(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

  it.each(['nbd', 'api', 'metrics'])('names a busy %s port and exits 1', async (server) => {
    const args = [...FREE_PORTS, `--${server}-port`, String(busyPort), '--data-dir', path.join(makeTempDir(), 'data')];
    const result = await weftdExpectingExit(args);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${server} port 127.0.0.1:${busyPort} is already in use`);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('refuses a data dir written in another on-disk format, and leaves it alone', async () => {
    const dataDir = makeTempDir();
    const formatFile = path.join(dataDir, 'FORMAT');
    fs.writeFileSync(formatFile, JSON.stringify({ format: 999 }));
    const result = await weftdExpectingExit(['--data-dir', dataDir, ...FREE_PORTS]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/format/i);
    expect(result.stderr).toContain('999');
    expect(fs.readFileSync(formatFile, 'utf8')).toBe(JSON.stringify({ format: 999 }));
  });
});

describe('one weftd per data dir', () => {
  it('refuses a second weftd on a data dir in use, naming the pid of the first', async () => {
    const first = await startWeftd();
    const second = await weftdExpectingExit(['--data-dir', first.dataDir, ...FREE_PORTS]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`data dir ${first.dataDir} is in use by another weftd (pid ${first.pid})`);
    await first.stop();
  });

  it('starts on a data dir whose LOCK names a live process that is not a weftd (a reused pid)', async () => {
    const node = await startWeftd();
    await node.stop();
    fs.writeFileSync(path.join(node.dataDir, 'LOCK'), `${process.pid}\n`);
    await node.start();
    await node.stop();
  });

  it('starts after kill -9 of the weftd before, even while that one is a zombie not yet reaped', async () => {
    const dataDir = path.join(makeTempDir(), 'data');
    // sh starts weftd in the background and becomes sleep, which never reaps it: once killed,
    // weftd stays a zombie, its pid alive to kill(pid, 0), until sleep ends.
    const quoted = [WEFTD_BIN, '--data-dir', dataDir, ...FREE_PORTS].map((arg) => `'${arg}'`).join(' ');
    const parent = spawn('sh', ['-c', `${quoted} >/dev/null 2>&1 & echo $!; exec sleep 60`], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()))));
    try {
      await waitFor(() => fs.existsSync(path.join(dataDir, 'LOCK')) && fs.readFileSync(path.join(dataDir, 'LOCK'), 'utf8') === `${pid}\n`);
      process.kill(pid, 'SIGKILL');
      await waitFor(() => /\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')));
      const node = await startWeftd({ dataDir });
      await node.stop();
    } finally {
      parent.kill('SIGKILL'); // the zombie goes with its parent; weftd itself, should it still run, too
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});
