// The clients a node keeps open to other nodes for the calls on a write's path
// (fabric/api/node-clients.ts), against a real weftd that stops and starts again on the same port.

import * as grpc from '@grpc/grpc-js';
import type { WeftClient } from '../../fabric/api/client';
import { NodeClients } from '../../fabric/api/node-clients';
import { freePort } from '../helpers/free-port';
import { cleanupAll, startWeftd } from '../helpers/weftd';

afterAll(cleanupAll);

test('one connection per node while it answers; one that failed for want of the node is dropped, the next call connects afresh', async () => {
  const apiPort = await freePort();
  const node = await startWeftd({ extraArgs: ['--api-port', String(apiPort)] });
  expect(node.apiPort).toBe(apiPort);
  const clients = new NodeClients(2000);
  const used: WeftClient[] = [];
  const call = () =>
    clients.call('n2', `127.0.0.1:${apiPort}`, async (client) => {
      used.push(client);
      return client.listVolumes();
    });
  try {
    await call();
    await call();
    expect(used[1]).toBe(used[0]);

    await node.stop();
    await expect(call()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await node.start();
    await expect(call()).resolves.toEqual([]);
    expect(used[3]).not.toBe(used[0]);

    // Closed (the node stops): a call still works, with a client of its own.
    clients.close();
    await expect(call()).resolves.toEqual([]);
    expect(used[4]).not.toBe(used[3]);
  } finally {
    clients.close();
    await node.stop();
  }
});
