// A verify's stall deadline (WeftClient.verifyVolume) against weftd of this version and of an
// earlier one, during a rolling upgrade: the earlier one sends progress only when a whole percent
// is done (minutes apart on a big volume) and says no heartbeat, so its silence is no stall. Each is
// a real gRPC server answering VerifyVolume as that version does.

import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftApiError, WeftClient } from '../../fabric/api/client';
import { serviceDefinition } from '../../fabric/api/definition';

const servers: grpc.Server[] = [];
afterAll(() => servers.forEach((server) => server.forceShutdown()));

/** A VolumeService whose VerifyVolume sends two progress messages, silentMs apart, then the report. */
async function verifyServer(heartbeatMs: number, silentMs: number): Promise<string> {
  const server = new grpc.Server();
  servers.push(server);
  server.addService(serviceDefinition('VolumeService'), {
    VerifyVolume: (call: grpc.ServerWritableStream<{ name: string }, object>) => {
      void (async () => {
        call.write({ progress: { doneBlocks: 0, totalBlocks: 100, heartbeatMs } });
        await sleep(silentMs);
        if (call.cancelled) return;
        call.write({ progress: { doneBlocks: 1, totalBlocks: 100, heartbeatMs } });
        call.write({ report: { volume: call.request.name, checkedBlocks: 100, badBlockOffsets: [], replicas: [], skippedReplicas: [] } });
        call.end();
      })();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return `127.0.0.1:${port}`;
}

test('an earlier version, silent for longer than the deadline within a percent, is not taken for stuck', async () => {
  const client = new WeftClient(await verifyServer(0, 1500), 1000);
  try {
    expect(await client.verifyVolume('big')).toMatchObject({ volume: 'big', checkedBlocks: 100, badBlockOffsets: [] });
  } finally {
    client.close();
  }
});

test('this version, silent for longer than the deadline, is: the verify fails with DEADLINE_EXCEEDED', async () => {
  const client = new WeftClient(await verifyServer(500, 1500), 1000);
  try {
    const stalled = await client.verifyVolume('big').catch((err: unknown) => err);
    expect(stalled).toBeInstanceOf(WeftApiError);
    expect(stalled).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED, message: expect.stringMatching(/sent no progress of the verify of big for 1 s/) });
  } finally {
    client.close();
  }
});
