// ForwardingDevice against real primaries: weftd processes (each holding its own volume "vol"), the
// node's own engine as the local shortcut, and nbdkit for a failing disk. It forwards every call,
// rides out a primary killed mid-I/O, a fenced primary (EPERM) and a stopped one (ESHUTDOWN) by
// re-routing and re-issuing, passes the primary's own errors through, and gives up with EIO in time.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { IoError } from '../../fabric/errors';
import { NbdClient } from '../../fabric/nbd/client';
import { NbdServer } from '../../fabric/nbd/server';
import { replicationExportName } from '../../fabric/nbd-exports';
import { ForwardingDevice, type RouteTarget } from '../../fabric/replication/forwarding-device';
import { connectNbdRoute } from '../../fabric/replication/nbd-route-target';
import { DeviceHandle } from '../../fabric/volume/device-handle';
import { LocalEngine } from '../../fabric/volume/local-engine';
import { freePort } from '../helpers/free-port';
import { ReplicaNode } from '../helpers/replica-node';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, killAndWait, makeTempDir, run, track, type WeftdHandle } from '../helpers/weftd';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const BLOCK = 4096;
const silent = pino({ level: 'silent' });

let a: ReplicaNode;
let b: ReplicaNode;
const opened: Array<{ close(): void }> = [];

beforeAll(async () => {
  [a, b] = await Promise.all([ReplicaNode.start('a', 'vol', SIZE), ReplicaNode.start('b', 'vol', SIZE)]);
});

afterEach(() => {
  for (const item of opened.splice(0)) item.close();
  a.closeClients();
  b.closeClients();
});

afterAll(cleanupAll);

/** A route to `exportName` on a node, counting its calls. */
function countedRoute(where: () => { node: WeftdHandle; exportName: string }): { route: () => Promise<RouteTarget>; calls: () => number } {
  let calls = 0;
  return {
    route: () => {
      calls++;
      const { node, exportName } = where();
      return connectNbdRoute({ host: '127.0.0.1', port: node.nbdPort, exportName, timeoutMs: 2000 });
    },
    calls: () => calls,
  };
}

function forwarder(route: () => Promise<RouteTarget>, retryForMs?: number): ForwardingDevice {
  const device = new ForwardingDevice({ volume: 'vol', sizeBytes: () => SIZE, route, retryForMs, logger: silent });
  opened.push(device);
  return device;
}

/** A 4 KiB block whose bytes say which write made it. */
function pattern(index: number): Buffer {
  const data = Buffer.alloc(BLOCK, index & 0xff);
  data.writeUInt32BE(index, 0);
  return data;
}

async function plainClient(node: ReplicaNode): Promise<NbdClient> {
  const client = await NbdClient.connect({ host: '127.0.0.1', port: node.node.nbdPort, exportName: 'vol' });
  opened.push(client);
  return client;
}

it('forwards every data call to the primary, and a real NBD client served from it sees the volume', async () => {
  const route = countedRoute(() => ({ node: a.node, exportName: 'vol' }));
  const device = forwarder(route.route);
  const server = new NbdServer({ provider: { names: () => ['vol'], open: () => ({ device, close: () => undefined }) }, logger: silent });
  const port = await server.listen('127.0.0.1', 0);
  try {
    const uri = `nbd://127.0.0.1:${port}/vol`;
    const info = await run('nbdinfo', ['--json', uri]);
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout).exports[0]).toMatchObject({ 'export-size': SIZE, can_fua: true, can_trim: true, can_zero: true, is_read_only: false });
    const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'write -z 1M 64k', '-c', 'discard 2M 64k', '-c', 'flush', uri]);
    expect(io.code).toBe(0);
  } finally {
    await server.close();
  }
  // What the client wrote is on the primary, read over the primary's own export.
  const onPrimary = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 1M', '-c', 'read -P 0 1M 64k', '-c', 'read -P 0 2M 64k', a.node.nbdUri('vol')]);
  expect(onPrimary.stderr + onPrimary.stdout).not.toMatch(/fail/i);
  expect(onPrimary.code).toBe(0);

  await device.write(3 * MiB, pattern(3), true);
  await device.trim(3 * MiB + BLOCK, BLOCK, true);
  await device.writeZeroes(3 * MiB + 2 * BLOCK, BLOCK, { fua: true, noHole: true });
  expect(await device.read(3 * MiB, BLOCK)).toEqual(pattern(3));
  expect(await (await plainClient(a)).read(3 * MiB, BLOCK)).toEqual(pattern(3));
  expect(await device.blockStatus(0, MiB)).toEqual([{ lengthBytes: MiB, hole: false, zero: false }]);
  expect(route.calls()).toBe(1); // one connection to the primary, kept

  device.close();
  await expect(device.read(0, BLOCK)).rejects.toMatchObject({ errno: 'ESHUTDOWN', message: 'volume vol: the forwarding device is closed' });
  expect(route.calls()).toBe(1);
});

it('re-issues every write in flight on a primary killed with -9 on the next primary: none fails, the client sees a pause', async () => {
  const doomed = await ReplicaNode.start('k', 'vol', SIZE);
  let primary: ReplicaNode = doomed;
  const sentTo = new Map<number, Set<string>>(); // write index -> nodes it was sent to
  const ackedBy = new Map<number, string>();
  const device = forwarder(async () => {
    const node = primary;
    const target = await connectNbdRoute({ host: '127.0.0.1', port: node.node.nbdPort, exportName: 'vol', timeoutMs: 2000 });
    return {
      ...target,
      write: async (offsetBytes, data, fua) => {
        const index = offsetBytes / BLOCK;
        sentTo.set(index, (sentTo.get(index) ?? new Set()).add(node.id));
        await target.write(offsetBytes, data, fua);
        ackedBy.set(index, node.id);
      },
    };
  });

  // 32 writers, each write to a block of its own, until the next primary has acknowledged 200.
  const acks = (node: string) => [...ackedBy.values()].filter((id) => id === node).length;
  let next = 0;
  let stop = false;
  const failures: unknown[] = [];
  const writer = async () => {
    while (!stop && next < SIZE / BLOCK) {
      const index = next++;
      await device.write(index * BLOCK, pattern(index), false).catch((err: unknown) => failures.push(err));
    }
  };
  const writers = Array.from({ length: 32 }, writer);
  await waitFor(() => acks('k') >= 200);
  await doomed.node.kill9(); // route() still answers the dead node for a while: connection refused
  primary = b;
  await waitFor(() => acks('b') >= 200);
  stop = true;
  await Promise.all(writers);

  expect(failures).toEqual([]);
  expect(ackedBy.size).toBe(next); // every write was acknowledged, by one primary or the other
  const reissued = [...sentTo].filter(([index, nodes]) => nodes.has('k') && ackedBy.get(index) === 'b').map(([index]) => index);
  expect(reissued.length).toBeGreaterThan(0);
  // Every write the new primary acknowledged is there.
  const onB = [...ackedBy].filter(([, node]) => node === 'b').map(([index]) => index);
  expect(await blocksNotHolding(await plainClient(b), onB)).toEqual([]);
});

it('re-routes 32 requests in flight on a fenced primary (EPERM) with one route() call, and all complete', async () => {
  let epoch = 1;
  const route = countedRoute(() => ({ node: a.node, exportName: replicationExportName('vol', epoch) }));
  const device = forwarder(route.route);
  await device.write(0, pattern(0), false); // connected at epoch 1

  await a.connect(2); // a newer primary raises the volume's epoch: the epoch-1 connection is fenced
  epoch = 2;
  const base = 4 * MiB / BLOCK;
  const requests = Array.from({ length: 32 }, (_, i) => device.write((base + i) * BLOCK, pattern(base + i), false));
  await expect(Promise.all([...requests, device.flush()])).resolves.toBeDefined();
  expect(route.calls()).toBe(2);

  const written = Array.from({ length: 32 }, (_, i) => base + i);
  expect(await blocksNotHolding(await a.connect(2), written)).toEqual([]);
});

it('re-routes from the local shortcut once the node stops serving (ESHUTDOWN)', async () => {
  const dir = makeTempDir('weft-forward-');
  fs.mkdirSync(path.join(dir, 'pool'));
  const engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: path.join(dir, 'pool'), sizeBytes: 64 * MiB }], logger: silent });
  await engine.createVolume({ name: 'vol', sizeBytes: SIZE });
  const targets: string[] = [];
  const device = forwarder(async () => {
    if (targets.length === 0) {
      targets.push('local');
      return engine.openVolume('vol');
    }
    targets.push('b');
    return connectNbdRoute({ host: '127.0.0.1', port: b.node.nbdPort, exportName: 'vol' });
  });
  await device.write(5 * MiB, pattern(5), true);
  await engine.close();

  await device.write(6 * MiB, pattern(6), true);
  expect(targets).toEqual(['local', 'b']);
  expect(await (await plainClient(b)).read(6 * MiB, BLOCK)).toEqual(pattern(6));
});

describe('the store names another primary (primaryMoved)', () => {
  it('leaves a primary that hangs at once: the write in flight on it is sent to the next primary', async () => {
    const hung = await ReplicaNode.start('h', 'vol', SIZE);
    let primary: ReplicaNode = hung;
    // A request timeout longer than the test: only the move can take the write off the hung primary.
    const device = forwarder(() => connectNbdRoute({ host: '127.0.0.1', port: primary.node.nbdPort, exportName: 'vol', timeoutMs: 120_000 }));
    const index = 14 * MiB / BLOCK;
    await device.write(0, pattern(0), true);
    process.kill(hung.node.pid as number, 'SIGSTOP');
    try {
      const write = device.write(index * BLOCK, pattern(index), true);
      await sleep(300); // sent, and not answered
      primary = b;
      device.primaryMoved();
      const outcome = await Promise.race([write.then(() => 'acknowledged'), sleep(20_000, 'still waiting', { ref: false })]);
      expect(outcome).toBe('acknowledged');
      expect(await blocksNotHolding(await plainClient(b), [index])).toEqual([]);
    } finally {
      process.kill(hung.node.pid as number, 'SIGCONT');
      await hung.node.kill9();
    }
  });

  it('keeps a target that reaches the new primary already, and leaves one that does not', async () => {
    const route = countedRoute(() => ({ node: a.node, exportName: 'vol' }));
    const device = forwarder(route.route);
    await device.write(0, pattern(0), true);
    device.primaryMoved(() => true);
    await device.write(BLOCK, pattern(1), true);
    expect(route.calls()).toBe(1);
    device.primaryMoved(() => false);
    await device.write(2 * BLOCK, pattern(2), true);
    expect(route.calls()).toBe(2);
  });

  it('does not take a route found across the move: it asks again', async () => {
    const found: string[] = [];
    let answer: (() => void) | undefined;
    const device = forwarder(async () => {
      const node = found.length === 0 ? a : b;
      found.push(node.id);
      if (found.length === 1) await new Promise<void>((resolve) => (answer = resolve)); // the first answer comes late
      return connectNbdRoute({ host: '127.0.0.1', port: node.node.nbdPort, exportName: 'vol' });
    });
    const index = 15 * MiB / BLOCK;
    const write = device.write(index * BLOCK, pattern(index), true);
    await waitFor(() => answer !== undefined);
    device.primaryMoved();
    (answer as () => void)();
    await write;
    expect(found).toEqual(['a', 'b']);
    expect(await blocksNotHolding(await plainClient(b), [index])).toEqual([]);
    expect((await (await plainClient(a)).read(index * BLOCK, BLOCK)).equals(pattern(index))).toBe(false);
  });
});

describe('a client whose connection has ended', () => {
  /** A block no other test writes: pattern() with a mark of its own. */
  const marked = (index: number) => {
    const data = pattern(index);
    data.write('client gone', 8);
    return data;
  };

  /** A route that is refused (nothing listens) until moveTo() names a node. */
  async function movableRoute(): Promise<{ route: () => Promise<RouteTarget>; moveTo: (node: ReplicaNode) => void; calls: () => number }> {
    const nowhere = await freePort();
    let node: ReplicaNode | undefined;
    let calls = 0;
    return {
      route: () => {
        calls++;
        return connectNbdRoute({ host: '127.0.0.1', port: node?.node.nbdPort ?? nowhere, exportName: 'vol', timeoutMs: 2000 });
      },
      moveTo: (to) => (node = to),
      calls: () => calls,
    };
  }

  it("has its requests dropped, not re-issued on the next primary; a connected client's go on", async () => {
    const { route, moveTo } = await movableRoute();
    const device = forwarder(route);
    const gone = { abandoned: false };
    const connected = { abandoned: false };
    const base = 8 * MiB / BLOCK;
    const old = device.write(base * BLOCK, marked(base), true, gone);
    const live = device.write((base + 1) * BLOCK, marked(base + 1), true, connected);
    await sleep(300); // both are retrying: no primary answers
    gone.abandoned = true;
    moveTo(b);
    await expect(old).rejects.toMatchObject({ errno: 'ESHUTDOWN', message: "volume vol: the client's connection has ended; its request is not sent again" });
    await expect(live).resolves.toBeUndefined();
    const onB = await plainClient(b);
    expect(await onB.read((base + 1) * BLOCK, BLOCK)).toEqual(marked(base + 1));
    expect(await onB.read(base * BLOCK, BLOCK)).not.toEqual(marked(base));
  });

  it('has a request dropped when its client leaves while a primary is being found, before it is sent', async () => {
    let resolveRoute: (() => void) | undefined;
    const device = forwarder(async () => {
      await new Promise<void>((resolve) => (resolveRoute = resolve)); // a connect that takes a while (a failover)
      return connectNbdRoute({ host: '127.0.0.1', port: b.node.nbdPort, exportName: 'vol', timeoutMs: 2000 });
    });
    const owner = { abandoned: false };
    const block = 11 * MiB / BLOCK;
    const write = device.write(block * BLOCK, marked(block), true, owner);
    await waitFor(() => resolveRoute !== undefined);
    owner.abandoned = true; // the client leaves meanwhile
    resolveRoute?.();
    await expect(write).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
    expect(await (await plainClient(b)).read(block * BLOCK, BLOCK)).not.toEqual(marked(block));
    await device.write((block + 1) * BLOCK, marked(block + 1), true); // the target found is kept for others
    expect(await (await plainClient(b)).read((block + 1) * BLOCK, BLOCK)).toEqual(marked(block + 1));
  });

  /** An NBD server on the forwarder that serves a client as a node with a copy does: a handle per connection. */
  async function serveThroughHandles(device: ForwardingDevice): Promise<{ uri: string; port: number; abandoned: () => boolean; close: () => Promise<void> }> {
    let abandoned = false;
    const server = new NbdServer({
      provider: {
        names: () => ['vol'],
        open: () => {
          const handle = new DeviceHandle(device, () => undefined);
          const abandon = () => {
            abandoned = true;
            handle.abandon();
          };
          return { device: handle, close: () => handle.close(), abandon };
        },
      },
      logger: silent,
    });
    const port = await server.listen('127.0.0.1', 0);
    return { uri: `nbd://127.0.0.1:${port}/vol`, port, abandoned: () => abandoned, close: () => server.close() };
  }

  it('through the NBD server: a client killed mid-failover (a hard disconnect) has its write dropped', async () => {
    const { route, moveTo, calls } = await movableRoute();
    const served = await serveThroughHandles(forwarder(route));
    try {
      const writer = track(spawn('qemu-io', ['-f', 'raw', '-c', `write -P 0x6b ${9 * MiB} 4k`, served.uri], { stdio: 'ignore' }));
      await waitFor(() => calls() >= 2); // the forwarder is retrying the write: no primary answers
      await killAndWait(writer, 'SIGKILL'); // its connection ends with the write in flight
      await waitFor(served.abandoned); // the server has read the end of the connection
      moveTo(b);
      await sleep(1500); // past the forwarder's longest backoff: a retry would have reached b by now
    } finally {
      await served.close();
    }
    const onB = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0x6b ${9 * MiB} 4k`, b.node.nbdUri('vol')]);
    expect(onB.stdout).toMatch(/Pattern verification failed/);
  });

  it('through the NBD server: after NBD_CMD_DISC (a soft disconnect) the write in flight still lands', async () => {
    const { route, moveTo, calls } = await movableRoute();
    const served = await serveThroughHandles(forwarder(route));
    const block = 10 * MiB / BLOCK;
    try {
      const client = await NbdClient.connect({ host: '127.0.0.1', port: served.port, exportName: 'vol' });
      const write = client.write(block * BLOCK, marked(block), true).catch(() => undefined);
      await waitFor(() => calls() >= 2);
      client.close(); // sends NBD_CMD_DISC: the server handles the requests outstanding, then closes
      await write;
      moveTo(b);
      await waitFor(async () => (await (await plainClient(b)).read(block * BLOCK, BLOCK)).equals(marked(block)), 5000);
    } finally {
      await served.close();
    }
  });
});

describe('errors that are the primary answer, not its absence', () => {
  it('passes a read past the end back unchanged, and keeps the primary', async () => {
    const route = countedRoute(() => ({ node: a.node, exportName: 'vol' }));
    const device = forwarder(route.route);
    const past = device.read(SIZE, BLOCK);
    await expect(past).rejects.toThrow(IoError);
    await expect(past).rejects.toMatchObject({ errno: 'EINVAL' });
    expect(await device.read(0, BLOCK)).toHaveLength(BLOCK);
    expect(route.calls()).toBe(1);
  });

  it("passes EIO from the primary's disk back unchanged", async () => {
    const port = await freePort();
    track(spawn('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), '--filter=error', 'memory', '16M', 'error=EIO', 'error-rate=100%'], { stdio: 'ignore' }));
    await waitFor(() => canConnect(port));
    let calls = 0;
    const device = forwarder(() => {
      calls++;
      return connectNbdRoute({ host: '127.0.0.1', port, exportName: '' });
    });
    await expect(device.read(0, BLOCK)).rejects.toMatchObject({ errno: 'EIO', message: expect.stringContaining('server answered error 5') });
    await expect(device.write(0, pattern(0), false)).rejects.toMatchObject({ errno: 'EIO' });
    expect(calls).toBe(1);
  });
});

it('fails with EIO naming the volume and the last error once no primary has answered for retryForMs', async () => {
  const port = await freePort(); // nothing listens there
  let calls = 0;
  const device = forwarder(() => {
    calls++;
    return connectNbdRoute({ host: '127.0.0.1', port, exportName: 'vol' });
  }, 500);
  const read = device.read(0, BLOCK);
  await expect(read).rejects.toMatchObject({ errno: 'EIO' });
  await expect(read).rejects.toThrow(/^volume vol: no primary answered within 500 ms; last error: volume vol: no route to its primary: .*ECONNREFUSED/);
  expect(calls).toBeGreaterThan(1); // it kept asking
});

it('a FLUSH that waited longer than retryForMs on a primary that then went away is retried, not failed: the window counts from the failure', async () => {
  let calls = 0;
  const device = forwarder(async () => {
    calls++;
    const target = await connectNbdRoute({ host: '127.0.0.1', port: (calls === 1 ? a : b).node.nbdPort, exportName: 'vol', timeoutMs: 2000 });
    if (calls > 1) return target;
    // A primary slow to flush (a busy disk), whose node then dies: its connection goes.
    const slowThenGone: RouteTarget = Object.assign(Object.create(target) as RouteTarget, {
      flush: async () => {
        await sleep(700);
        target.close();
        return target.flush();
      },
    });
    return slowThenGone;
  }, 500);
  await expect(device.flush()).resolves.toBeUndefined();
  expect(calls).toBe(2);
});

/** The blocks (of those given) that do not hold what pattern() wrote there. */
async function blocksNotHolding(client: NbdClient, indices: number[]): Promise<number[]> {
  const wrong: number[] = [];
  for (const index of indices) if (!(await client.read(index * BLOCK, BLOCK)).equals(pattern(index))) wrong.push(index);
  return wrong;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
