// End-to-end tests of the control API: a real ApiServer over a real LocalEngine, called through
// WeftClient over TCP on 127.0.0.1. Covers every RPC, request validation and error mapping.

import * as grpc from '@grpc/grpc-js';
import { WeftApiError, WeftClient } from '../../fabric/api/client';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import pino from 'pino';
import { ApiServer } from '../../fabric/api/server';
import { waitFor } from '../helpers/wait-for';
import { corruptOnDisk, POOL_BYTES, startApiFixture, writeBlock, type ApiFixture } from './api-fixture';
import { openExport } from '../helpers/open-devices';

const MiB = 1 << 20;

let fixture: ApiFixture;
let client: WeftClient;

beforeAll(async () => {
  fixture = await startApiFixture();
  client = new WeftClient(fixture.endpoint);
});

afterAll(async () => {
  client?.close();
  await fixture?.stop();
});

async function failure(call: Promise<unknown>): Promise<WeftApiError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof WeftApiError)) throw new Error(`expected a WeftApiError, got ${String(error)}`);
  return error;
}

/** The call fails with INVALID_ARGUMENT naming the field, and no volume or snapshot changes. */
async function expectInvalid(call: () => Promise<unknown>, field: string): Promise<void> {
  const before = [await client.listVolumes(), await client.listSnapshots()];
  const error = await failure(call());
  expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(error.message).toContain(field);
  expect([await client.listVolumes(), await client.listSnapshots()]).toEqual(before);
}

describe('VolumeService', () => {
  it('creates, gets, lists, resizes and deletes a volume', async () => {
    const created = await client.createVolume({ name: 'crud', sizeBytes: 64 * MiB });
    expect(created).toMatchObject({ name: 'crud', class: 'default', sizeBytes: 64 * MiB, snapshotCount: 0, connections: 0 });
    expect(created.sourceSnapshot).toBeUndefined();
    expect(Date.parse(created.createdAt)).not.toBeNaN();

    expect(await client.getVolume('crud')).toEqual(created);
    expect((await client.listVolumes()).map((v) => v.name)).toContain('crud');
    expect((await client.resizeVolume('crud', 128 * MiB)).sizeBytes).toBe(128 * MiB);

    await client.deleteVolume('crud');
    const gone = await failure(client.getVolume('crud'));
    expect(gone.code).toBe(grpc.status.NOT_FOUND);
    expect(gone.message).toContain('crud');
  });

  it('places a volume in the class asked for, and refuses an unknown class', async () => {
    expect((await client.createVolume({ name: 'classy', sizeBytes: MiB, class: 'default' })).class).toBe('default');
    expect((await failure(client.createVolume({ name: 'nowhere', sizeBytes: MiB, class: 'ssd' }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    await client.deleteVolume('classy');
  });

  it('maps the engine refusals to their codes with the engine message', async () => {
    await client.createVolume({ name: 'taken', sizeBytes: MiB });
    expect((await failure(client.createVolume({ name: 'taken', sizeBytes: MiB }))).code).toBe(grpc.status.ALREADY_EXISTS);
    expect((await failure(client.resizeVolume('taken', 4096))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await failure(client.deleteVolume('absent'))).code).toBe(grpc.status.NOT_FOUND);
    const tooBig = await failure(client.createVolume({ name: 'huge', sizeBytes: 2 * POOL_BYTES }));
    expect(tooBig.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(tooBig.message).toMatch(/does not fit/);
    await client.createSnapshot('taken', 'pinned');
    await client.deleteVolume('taken'); // its snapshot stays, and keeps the name taken
    const reused = await failure(client.createVolume({ name: 'taken', sizeBytes: MiB }));
    expect(reused.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(reused.message).toMatch(/pinned/);
    await client.deleteSnapshot('taken', 'pinned');
  });

  it('clones a snapshot, at its size or larger, into the class asked for', async () => {
    await client.createVolume({ name: 'origin', sizeBytes: 8 * MiB });
    await writeBlock(fixture.engine, 'origin', 0, Buffer.alloc(4096, 7));
    await client.createSnapshot('origin', 'base');

    const same = await client.createVolume({ name: 'copy', class: 'default', sourceSnapshot: { volume: 'origin', snapshot: 'base' } });
    expect(same).toMatchObject({ sizeBytes: 8 * MiB, sourceSnapshot: 'origin@base', class: 'default' });
    // The layers cross the wire as the engine describes them: the head, then the snapshot it reads through.
    expect(same.layers).toEqual([
      { class: 'default', allocatedBytes: 0 },
      { snapshot: { volume: 'origin', name: 'base' }, class: 'default', allocatedBytes: 4096 },
    ]);
    expect(await client.getVolume('copy')).toEqual(fixture.engine.getVolume('copy'));
    const larger = await client.createVolume({ name: 'bigcopy', sizeBytes: 16 * MiB, sourceSnapshot: { volume: 'origin', snapshot: 'base' } });
    expect(larger.sizeBytes).toBe(16 * MiB);
    const device = openExport(fixture.engine, 'bigcopy');
    expect(await device.read(0, 4096)).toEqual(Buffer.alloc(4096, 7));
    device.close();

    const missing = await failure(client.createVolume({ name: 'x', sourceSnapshot: { volume: 'origin', snapshot: 'nope' } }));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    await expectInvalid(() => client.createVolume({ name: 'x', class: 'ssd', sourceSnapshot: { volume: 'origin', snapshot: 'base' } }), 'no pool of class "ssd"');
    for (const name of ['copy', 'bigcopy']) await client.deleteVolume(name);
    await client.deleteSnapshot('origin', 'base');
    await client.deleteVolume('origin');
  });

  it('reverts a volume to a snapshot', async () => {
    await client.createVolume({ name: 'undo', sizeBytes: 4 * MiB });
    await writeBlock(fixture.engine, 'undo', 0, Buffer.alloc(4096, 1));
    await client.createSnapshot('undo', 'good');
    await writeBlock(fixture.engine, 'undo', 0, Buffer.alloc(4096, 2));

    expect((await client.revertVolume('undo', 'good')).name).toBe('undo');
    const device = openExport(fixture.engine, 'undo');
    expect(await device.read(0, 4096)).toEqual(Buffer.alloc(4096, 1));
    device.close();
    expect((await failure(client.revertVolume('undo', 'absent'))).code).toBe(grpc.status.NOT_FOUND);
    await client.deleteSnapshot('undo', 'good');
    await client.deleteVolume('undo');
  });

  it('streams verify progress, then reports bad blocks at their offsets', async () => {
    await client.createVolume({ name: 'checked', sizeBytes: 4 * MiB });
    const pattern = Buffer.alloc(4096, 0x5a);
    pattern.write('api-server.test verify pattern');
    await writeBlock(fixture.engine, 'checked', 8192, pattern);

    const progress: Array<[number, number]> = [];
    const clean = await client.verifyVolume('checked', (done, total) => progress.push([done, total]));
    expect(clean).toEqual({ volume: 'checked', checkedBlocks: 1, badBlockOffsets: [] });
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(101);
    expect(progress[progress.length - 1][0]).toBe(progress[progress.length - 1][1]);

    corruptOnDisk(fixture.engine, pattern);
    expect((await client.verifyVolume('checked')).badBlockOffsets).toEqual([8192]);
    expect((await failure(client.verifyVolume('absent'))).code).toBe(grpc.status.NOT_FOUND);
    await client.deleteVolume('checked');
  });

  it('stops a verify whose caller cancels it, and lets go of the volume at once', async () => {
    await client.createVolume({ name: 'long', sizeBytes: 4 * MiB });
    await writeBlock(fixture.engine, 'long', 0, Buffer.alloc(4096, 0x33));
    // The node's verify, as a long one is: it has sent its first percent when the caller cancels, and
    // goes on (the real verify) only once the call's cancel has reached it.
    const verify = fixture.engine.verifyVolume.bind(fixture.engine);
    const served = jest.spyOn(fixture.engine, 'verifyVolume').mockImplementation(async (name, onProgress, snapshot, stop) => {
      onProgress?.(1, 100);
      if (stop) await new Promise((resolve) => stop.addEventListener('abort', resolve));
      return verify(name, onProgress, snapshot, stop);
    });
    try {
      const stop = new AbortController();
      const cancelled = await failure(client.verifyVolume('long', () => stop.abort(), stop.signal));
      expect(cancelled.code).toBe(grpc.status.CANCELLED);
      const outcome = await (served.mock.results[0].value as Promise<unknown>).then(
        () => 'ran to its end',
        (err: unknown) => (err as Error).message,
      );
      expect(outcome).toBe('the verify was cancelled by its caller after 0 of 1024 blocks');
      expect(fixture.engine.getVolume('long').connections).toBe(0);
      await client.deleteVolume('long');
    } finally {
      served.mockRestore();
    }
  });

  it('gives up on a verify that sends no progress within the deadline, and cancels it there; one that moves slowly runs to its end', async () => {
    await client.createVolume({ name: 'slow', sizeBytes: 4 * MiB });
    await writeBlock(fixture.engine, 'slow', 0, Buffer.alloc(4096, 0x44));
    const patient = new WeftClient(fixture.endpoint, 1000);
    const verify = fixture.engine.verifyVolume.bind(fixture.engine);
    // Stuck: the first step, then nothing until the call goes away.
    const stuck = jest.spyOn(fixture.engine, 'verifyVolume').mockImplementation(async (name, onProgress, snapshot, stop) => {
      onProgress?.(0, 1024);
      if (stop) await new Promise((resolve) => stop.addEventListener('abort', resolve));
      return verify(name, onProgress, snapshot, stop);
    });
    try {
      const stalled = await failure(patient.verifyVolume('slow'));
      expect(stalled.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(stalled.message).toMatch(/sent no progress of the verify of slow for 1 s: it was cancelled/);
      await expect(stuck.mock.results[0].value).rejects.toThrow(/the verify was cancelled by its caller/);
      await waitFor(() => fixture.engine.getVolume('slow').connections === 0, 2000, 20);
    } finally {
      stuck.mockRestore();
    }
    // Slow: 2.5 s within its first percent (no new percent to tell), moving all the while.
    const slow = jest.spyOn(fixture.engine, 'verifyVolume').mockImplementation(async (name, onProgress, snapshot, stop) => {
      for (let step = 0; step < 25; step++) {
        onProgress?.(step, 100_000);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return verify(name, onProgress, snapshot, stop);
    });
    try {
      expect(await patient.verifyVolume('slow')).toMatchObject({ volume: 'slow', checkedBlocks: 1, badBlockOffsets: [] });
    } finally {
      slow.mockRestore();
      patient.close();
    }
    await client.deleteVolume('slow');
  });

  it.each<[string, () => Promise<unknown>, string]>([
    ['create without a name', () => client.createVolume({ name: '', sizeBytes: MiB }), 'name is required'],
    ['create with a bad name', () => client.createVolume({ name: 'a/b', sizeBytes: MiB }), 'name "a/b"'],
    ['create with an @ in the name', () => client.createVolume({ name: 'a@b', sizeBytes: MiB }), 'name "a@b"'],
    ['create without a size', () => client.createVolume({ name: 'nosize' }), 'size_bytes'],
    ['create with a bad class', () => client.createVolume({ name: 'c', sizeBytes: MiB, class: '../x' }), 'class'],
    ['clone without a source volume', () => client.createVolume({ name: 'c', sourceSnapshot: { volume: '', snapshot: 's' } }), 'source_snapshot.volume'],
    ['clone with a bad source snapshot', () => client.createVolume({ name: 'c', sourceSnapshot: { volume: 'v', snapshot: '-s' } }), 'source_snapshot.snapshot'],
    ['clone with a bad class', () => client.createVolume({ name: 'c', class: '../x', sourceSnapshot: { volume: 'v', snapshot: 's' } }), 'class "../x"'],
    ['get without a name', () => client.getVolume(''), 'name is required'],
    ['resize to 0', () => client.resizeVolume('v', 0), 'size_bytes'],
    ['resize beyond 2^53', () => client.resizeVolume('v', 2 ** 60), 'size_bytes'],
    ['delete with a bad name', () => client.deleteVolume('.'), 'name'],
    ['verify without a name', () => client.verifyVolume(''), 'name is required'],
    ['revert without a snapshot', () => client.revertVolume('v', ''), 'snapshot is required'],
  ])('refuses %s with INVALID_ARGUMENT and changes nothing', async (_what, call, field) => {
    await expectInvalid(call, field);
  });
});

describe('SnapshotService', () => {
  it('creates, lists (all and per volume) and deletes snapshots', async () => {
    await client.createVolume({ name: 'snapped', sizeBytes: 4 * MiB });
    await client.createVolume({ name: 'other', sizeBytes: 4 * MiB });
    const first = await client.createSnapshot('snapped', 'one');
    expect(first).toMatchObject({ volume: 'snapped', name: 'one', sizeBytes: 4 * MiB });
    await client.createSnapshot('snapped', 'two');
    await client.createSnapshot('other', 'one');

    expect((await client.listSnapshots('snapped')).map((s) => s.name).sort()).toEqual(['one', 'two']);
    expect((await client.listSnapshots()).map((s) => `${s.volume}@${s.name}`).sort()).toEqual(['other@one', 'snapped@one', 'snapped@two']);
    expect((await failure(client.createSnapshot('snapped', 'one'))).code).toBe(grpc.status.ALREADY_EXISTS);
    expect((await failure(client.createSnapshot('absent', 'one'))).code).toBe(grpc.status.NOT_FOUND);

    for (const [volume, name] of [['snapped', 'one'], ['snapped', 'two'], ['other', 'one']]) await client.deleteSnapshot(volume, name);
    expect(await client.listSnapshots()).toEqual([]);
    expect((await failure(client.deleteSnapshot('snapped', 'one'))).code).toBe(grpc.status.NOT_FOUND);
    await client.deleteVolume('snapped');
    await client.deleteVolume('other');
  });

  it.each<[string, () => Promise<unknown>, string]>([
    ['create without a volume', () => client.createSnapshot('', 's'), 'volume is required'],
    ['create with a bad name', () => client.createSnapshot('v', 'a@b'), 'name "a@b"'],
    ['list with a bad volume', () => client.listSnapshots('a/b'), 'volume "a/b"'],
    ['delete without a name', () => client.deleteSnapshot('v', ''), 'name is required'],
  ])('refuses %s with INVALID_ARGUMENT and changes nothing', async (_what, call, field) => {
    await expectInvalid(call, field);
  });
});

describe('PoolService and NodeService', () => {
  it('lists the pool with its capacity and member', async () => {
    const [pool, ...others] = await client.listPools();
    expect(others).toEqual([]);
    expect(pool.class).toBe('default');
    expect(pool.capacityBytes).toBeGreaterThan(0);
    expect(pool.capacityBytes).toBeLessThanOrEqual(POOL_BYTES);
    expect(pool.members).toHaveLength(1);
    expect(pool.members[0].path.startsWith(fixture.dataDir)).toBe(true);
  });

  it("reports the node, with the port the API is actually bound to", async () => {
    const node = await client.getNodeInfo();
    expect(node).toMatchObject({
      nodeId: 'test-node',
      version: '0.0.0-test',
      apiPort: fixture.port,
      nbdPort: 10809,
      dataDir: fixture.dataDir,
      formatVersion: fixture.node.formatVersion,
      startedAt: fixture.node.startedAt.toISOString(),
    });
    expect(node.uptimeSeconds).toBeGreaterThanOrEqual(0);
  });
});

describe('AttachmentService', () => {
  const attachment = (volume: string, nodeId: string) => ({
    volume,
    nodeId,
    devicePath: '/dev/loop7',
    method: 'nbdfuse-loop',
    stagingPath: `/staging/${volume}`,
    workloads: [{ orchestrator: 'kubernetes', podName: 'app-0', podNamespace: 'default' }],
  });

  it("forgets a volume's attachments when the volume is deleted, on disk too, and keeps the others", async () => {
    await client.createVolume({ name: 'attached', sizeBytes: MiB });
    await client.createVolume({ name: 'neighbour', sizeBytes: MiB });
    for (const record of [attachment('attached', 'node-a'), attachment('attached', 'node-b'), attachment('neighbour', 'node-a')]) {
      await client.recordAttachment(record);
    }
    await client.deleteVolume('attached');
    expect((await client.listAttachments()).map((a) => `${a.volume}@${a.nodeId}`)).toEqual(['neighbour@node-a']);
    const onDisk = JSON.parse(fs.readFileSync(path.join(fixture.dataDir, 'attachments.json'), 'utf8')) as { volume: string }[];
    expect(onDisk.map((a) => a.volume)).toEqual(['neighbour']);
    await client.createVolume({ name: 'attached', sizeBytes: MiB }); // a new volume of the name starts unattached
    expect(await client.listAttachments({ volume: 'attached' })).toEqual([]);
    await client.deleteVolume('attached');
    await client.removeAttachment('neighbour', 'node-a');
    await client.deleteVolume('neighbour');
  });
});

describe('ApiServer lifecycle', () => {
  it('closes promptly with an idle client connected, after which the client cannot reach it', async () => {
    const other = await startApiFixture();
    const otherClient = new WeftClient(other.endpoint);
    let stopMs: number;
    try {
      await otherClient.getNodeInfo();
    } finally {
      const started = Date.now();
      await other.stop();
      stopMs = Date.now() - started;
    }
    try {
      expect(stopMs).toBeLessThan(1000);
      const error = await failure(otherClient.getNodeInfo());
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
      expect(error.message).toMatch(/^cannot reach weftd at 127\.0\.0\.1:\d+ \(/);
    } finally {
      otherClient.close();
    }
  });

  it('refuses to listen on a port that is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const server = new ApiServer({ engine: fixture.engine, node: fixture.node, cluster: fixture.cluster, logger: pino({ level: 'silent' }) });
    grpc.setLogVerbosity(grpc.logVerbosity.NONE); // grpc-js would also print the bind failure
    try {
      await expect(server.listen('127.0.0.1', (taken.address() as net.AddressInfo).port)).rejects.toThrow();
    } finally {
      grpc.setLogVerbosity(grpc.logVerbosity.ERROR);
      await server.close();
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
