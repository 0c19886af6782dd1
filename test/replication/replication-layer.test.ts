// ReplicationLayer's router, against a real weftd as the primary: a layer keeps the router it has
// (with its connection to the primary) when handed another, and closes it when the volume is
// retired, so that no connection to the primary is left behind. The primary's `volume show`
// counts the connections, as a user would look.

import pino from 'pino';
import { ForwardingDevice } from '../../fabric/replication/forwarding-device';
import { connectNbdRoute } from '../../fabric/replication/nbd-route-target';
import { ReplicationLayer } from '../../fabric/replication/replication-layer';
import { ReplicaNode } from '../helpers/replica-node';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const BLOCK = 4096;
const silent = pino({ level: 'silent' });

let primary: ReplicaNode;

beforeAll(async () => {
  primary = await ReplicaNode.start('p', 'vol', SIZE);
});

afterAll(cleanupAll);

function forwarder(): ForwardingDevice {
  return new ForwardingDevice({
    volume: 'vol',
    sizeBytes: () => SIZE,
    route: () => connectNbdRoute({ host: '127.0.0.1', port: primary.node.nbdPort, exportName: 'vol', timeoutMs: 2000 }),
    logger: silent,
  });
}

const refuseControl = () => Promise.reject(new Error('no control operations here'));
const connections = async () => (await primary.show()).connections;

it('keeps its router when handed a second one, closes the second, and closes its router when retired', async () => {
  const first = forwarder();
  const second = forwarder();
  const below = forwarder(); // the local copy's place in the stack; a routed layer never calls it
  const layer = new ReplicationLayer('vol', below);
  layer.replicate(first, refuseControl);
  await layer.write(0, Buffer.alloc(BLOCK, 0x11), true);
  expect(await connections()).toBe(1);

  layer.replicate(second, refuseControl);
  await expect(second.read(0, BLOCK)).rejects.toMatchObject({ errno: 'ESHUTDOWN' }); // closed, never connected
  await layer.write(BLOCK, Buffer.alloc(BLOCK, 0x22), true); // through the first, on its connection
  expect(await connections()).toBe(1);
  expect(await layer.read(0, 2 * BLOCK)).toEqual(Buffer.concat([Buffer.alloc(BLOCK, 0x11), Buffer.alloc(BLOCK, 0x22)]));

  layer.retire();
  await expect(layer.write(0, Buffer.alloc(BLOCK), true)).rejects.toMatchObject({ errno: 'ESHUTDOWN', message: 'volume vol was deleted from the cluster' });
  await expect(first.read(0, BLOCK)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  await waitFor(async () => (await connections()) === 0); // the primary saw the connection close
  below.close();
});

it('takes a new router after it was retired (the volume is back in the cluster)', async () => {
  const layer = new ReplicationLayer('vol', forwarder());
  layer.retire();
  const router = forwarder();
  layer.replicate(router, refuseControl);
  await layer.write(2 * BLOCK, Buffer.alloc(BLOCK, 0x33), true);
  expect(await layer.read(2 * BLOCK, BLOCK)).toEqual(Buffer.alloc(BLOCK, 0x33));
  router.close();
});
