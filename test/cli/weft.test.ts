// End-to-end tests of the `weft` CLI: the real process against a real ApiServer over a real
// LocalEngine (in this process, on 127.0.0.1 port 0), for every command, in table and JSON output.

import { execFile } from 'child_process';
import { corruptOnDisk, POOL_BYTES, startApiFixture, writeBlock, type ApiFixture } from '../api/api-fixture';
import type { NodeStatus } from '../../fabric/api/node-info';
import type { PoolInfo, SnapshotInfo, VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { errorLines, runWeft, WEFT_JS, type WeftRun } from './run-weft';
import { openExport } from '../helpers/open-devices';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

let fixture: ApiFixture;

beforeAll(async () => {
  fixture = await startApiFixture();
});

afterAll(async () => {
  await fixture?.stop();
});

const weft = (...args: string[]) => runWeft(['--endpoint', fixture.endpoint, ...args]);

/** Runs a command that must succeed quietly; returns its stdout. */
async function ok(...args: string[]): Promise<string> {
  const run = await weft(...args);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  return run.stdout;
}

async function okJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await ok('--output', 'json', ...args)) as T;
}

/** Runs a command that must fail with this exit code and one "weft: ..." line. */
async function fails(code: number, message: RegExp, ...args: string[]): Promise<WeftRun> {
  const run = await weft(...args);
  expect(run.code).toBe(code);
  expect(errorLines(run)).toEqual([expect.stringMatching(message)]);
  expect(errorLines(run)[0]).toMatch(/^weft: /);
  return run;
}

describe('weft volume', () => {
  it('creates, lists, shows, resizes and deletes a volume', async () => {
    expect(await ok('volume', 'create', 'data', '--size', '256MiB')).toBe('created volume "data": 256 MiB in class default\n');

    const list = (await ok('volume', 'list')).split('\n');
    expect(list[0]).toMatch(/^NAME\s+CLASS\s+SIZE\s+ALLOCATED\s+SNAPSHOTS\s+CONNECTIONS\s+SOURCE\s+CREATED$/);
    expect(list.find((line) => line.startsWith('data '))).toMatch(/^data\s+default\s+256 MiB\s+0 B\s+0\s+0\s+-\s+\d{4}-\d\d-\d\d /);

    const show = await ok('volume', 'show', 'data');
    expect(show).toMatch(/^Name:\s+data$/m);
    expect(show).toMatch(/^Size:\s+256 MiB \(268435456 bytes\)$/m);

    expect(await ok('volume', 'resize', 'data', '--size', '0.5G')).toBe('resized volume "data": 512 MiB in class default\n');
    expect((await okJson<VolumeInfo>('volume', 'show', 'data')).sizeBytes).toBe(GiB / 2);

    expect(await ok('volume', 'delete', 'data')).toBe('deleted volume "data"\n');
    expect(await ok('volume', 'list')).toBe('no volumes\n');
  });

  it('prints machine-readable JSON with byte sizes as numbers', async () => {
    const created = await okJson<VolumeInfo>('volume', 'create', 'jsonvol', '--size', '512MiB', '--class', 'default');
    expect(created).toMatchObject({ name: 'jsonvol', class: 'default', sizeBytes: 512 * MiB, allocatedBytes: 0 });
    const volumes = await okJson<VolumeInfo[]>('volume', 'list');
    expect(volumes.find((v) => v.name === 'jsonvol')).toEqual(created);
    expect(await okJson('volume', 'delete', 'jsonvol')).toEqual({ volume: 'jsonvol', deleted: true, keptSnapshots: [] });
    expect(await okJson('volume', 'list')).toEqual([]);
  });

  it('refuses what the engine refuses, with exit 1 and its reason', async () => {
    await ok('volume', 'create', 'dup', '--size', '1M');
    await fails(1, /^weft: volume dup already exists$/, 'volume', 'create', 'dup', '--size', '1M');
    await fails(1, /^weft: .*shrinking/, 'volume', 'resize', 'dup', '--size', '4096');
    await fails(1, /^weft: volume ghost does not exist$/, 'volume', 'show', 'ghost');
    await fails(1, /^weft: .*does not exist/, 'volume', 'delete', 'ghost');
    await fails(1, /^weft: a volume of \d+ bytes does not fit in pool default/, 'volume', 'create', 'huge', '--size', `${(2 * POOL_BYTES) / GiB}GiB`);
    await fails(1, /^weft: no pool of class "ssd"/, 'volume', 'create', 'fast', '--size', '1M', '--class', 'ssd');
    await fails(2, /^weft: --size: invalid size "lots"/, 'volume', 'create', 'x', '--size', 'lots');
    await ok('volume', 'delete', 'dup');
    expect(await okJson('volume', 'list')).toEqual([]);
  });
});

describe('weft snapshot, clone and revert', () => {
  afterEach(async () => {
    for (const s of fixture.engine.listSnapshots()) await fixture.engine.deleteSnapshot(s.volume, s.name);
    for (const v of fixture.engine.listVolumes()) await fixture.engine.deleteVolume(v.name);
  });

  it('creates, lists and deletes snapshots', async () => {
    await ok('volume', 'create', 'db', '--size', '64MiB');
    await ok('volume', 'create', 'logs', '--size', '64MiB');
    expect(await ok('snapshot', 'create', 'db', 'nightly')).toBe('created snapshot "db@nightly" (64 MiB)\n');
    await ok('snapshot', 'create', 'logs', 'nightly');

    const all = (await ok('snapshot', 'list')).trimEnd().split('\n');
    expect(all[0]).toMatch(/^VOLUME\s+SNAPSHOT\s+SIZE\s+EXCLUSIVE\s+CLASS\s+CREATED$/);
    expect(all.slice(1).map((line) => line.split(/\s+/).slice(0, 2).join('@')).sort()).toEqual(['db@nightly', 'logs@nightly']);
    const mine = await okJson<SnapshotInfo[]>('snapshot', 'list', 'db');
    expect(mine).toEqual([expect.objectContaining({ volume: 'db', name: 'nightly', sizeBytes: 64 * MiB })]);
    expect((await okJson<VolumeInfo>('volume', 'show', 'db')).snapshotCount).toBe(1);

    await fails(1, /^weft: snapshot db@nightly already exists$/, 'snapshot', 'create', 'db', 'nightly');
    await fails(1, /^weft: volume nope does not exist$/, 'snapshot', 'create', 'nope', 'nightly');
    expect(await ok('volume', 'delete', 'db')).toBe('deleted volume "db"; its snapshots stay: db@nightly\n');
    expect((await okJson<SnapshotInfo[]>('snapshot', 'list', 'db')).map((s) => s.name)).toEqual(['nightly']);
    await fails(1, /^weft: snapshots of an earlier volume named db still exist \(nightly\)/, 'volume', 'create', 'db', '--size', '1MiB');

    expect(await ok('snapshot', 'delete', 'db@nightly')).toBe('deleted snapshot "db@nightly"\n');
    expect(await okJson('snapshot', 'delete', 'logs@nightly')).toEqual({ volume: 'logs', snapshot: 'nightly', deleted: true });
    expect(await ok('snapshot', 'list')).toBe('no snapshots\n');
    await fails(1, /^weft: snapshot db@nightly does not exist$/, 'snapshot', 'delete', 'db@nightly');
  });

  it('clones a snapshot with --from-snapshot, at its size or larger', async () => {
    await ok('volume', 'create', 'golden', '--size', '32MiB');
    await writeBlock(fixture.engine, 'golden', 0, Buffer.alloc(4096, 9));
    await ok('snapshot', 'create', 'golden', 'v1');

    expect(await ok('volume', 'create', 'clone1', '--from-snapshot', 'golden@v1')).toBe(
      'created volume "clone1" from golden@v1: 32 MiB in class default\n',
    );
    expect(await ok('volume', 'show', 'clone1')).toMatch(/^Source:\s+golden@v1$/m);
    const larger = await okJson<VolumeInfo>('volume', 'create', 'clone2', '--from-snapshot', 'golden@v1', '--size', '64MiB');
    expect(larger).toMatchObject({ sizeBytes: 64 * MiB, sourceSnapshot: 'golden@v1' });
    const device = openExport(fixture.engine, 'clone2');
    expect(await device.read(0, 4096)).toEqual(Buffer.alloc(4096, 9));
    device.close();

    await fails(1, /^weft: size \d+ is smaller than snapshot golden@v1/, 'volume', 'create', 'clone3', '--from-snapshot', 'golden@v1', '--size', '1MiB');
    await fails(1, /^weft: snapshot golden@v9 does not exist$/, 'volume', 'create', 'clone4', '--from-snapshot', 'golden@v9');
  });

  it('reverts a volume to a snapshot', async () => {
    await ok('volume', 'create', 'app', '--size', '8MiB');
    await writeBlock(fixture.engine, 'app', 4096, Buffer.alloc(4096, 1));
    await ok('snapshot', 'create', 'app', 'before');
    await writeBlock(fixture.engine, 'app', 4096, Buffer.alloc(4096, 2));

    expect(await ok('volume', 'revert', 'app@before')).toBe('reverted volume "app" to snapshot "before": 8 MiB in class default\n');
    const device = openExport(fixture.engine, 'app');
    expect(await device.read(4096, 4096)).toEqual(Buffer.alloc(4096, 1));
    device.close();
    await fails(1, /^weft: snapshot app@after does not exist$/, 'volume', 'revert', 'app@after');
  });
});

describe('weft volume verify', () => {
  const pattern = Buffer.alloc(4096, 0x3c);
  pattern.write('weft.test verify pattern');

  beforeAll(async () => {
    await fixture.engine.createVolume({ name: 'scrub', sizeBytes: 64 * MiB });
    await writeBlock(fixture.engine, 'scrub', 3 * 4096, pattern);
  });

  afterAll(async () => {
    await fixture.engine.deleteVolume('scrub');
  });

  it('summarises a clean volume in one line and exits 0', async () => {
    expect(await ok('volume', 'verify', 'scrub')).toBe('verified volume "scrub": 1 blocks checked, no bad blocks\n');
  });

  it('draws a progress bar on a terminal', async () => {
    const command = `'${process.execPath}' '${WEFT_JS}' --endpoint ${fixture.endpoint} volume verify scrub`;
    const terminal = await new Promise<string>((resolve, reject) => {
      execFile('script', ['-qec', command, '/dev/null'], { timeout: 60_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
    });
    expect(terminal).toMatch(/\rverifying scrub \[[#.]{30}\] +\d+%/);
    expect(terminal).toContain('\r\x1b[K');
    expect(terminal).toContain('verified volume "scrub": 1 blocks checked, no bad blocks');
  });

  it('lists bad blocks by offset and exits 1', async () => {
    corruptOnDisk(fixture.engine, pattern);
    const run = await fails(1, /^weft: volume "scrub" has 1 bad block$/, 'volume', 'verify', 'scrub');
    expect(run.stdout).toBe('verified volume "scrub": 1 blocks checked, 1 bad block\nbad block at offset 12288\n');
    const json = await weft('--output', 'json', 'volume', 'verify', 'scrub');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout) as VerifyReport).toEqual({ volume: 'scrub', checkedBlocks: 1, badBlockOffsets: [12288] });
  });
});

describe('weft volume verify VOL@SNAP', () => {
  const pattern = Buffer.alloc(4096, 0x4d);
  pattern.write('weft.test snapshot verify pattern');

  afterAll(async () => {
    await fixture.engine.deleteVolume('held');
    await fixture.engine.deleteSnapshot('held', 'before');
  });

  it("scrubs the snapshot's chain, lists its bad block, and counts it under VOL@SNAP", async () => {
    await fixture.engine.createVolume({ name: 'held', sizeBytes: 8 * MiB });
    await writeBlock(fixture.engine, 'held', 2 * 4096, pattern);
    await writeBlock(fixture.engine, 'held', 5 * 4096, Buffer.alloc(4096, 0x11));
    await fixture.engine.createSnapshot('held', 'before');
    await writeBlock(fixture.engine, 'held', 2 * 4096, Buffer.alloc(4096, 0x22)); // the volume's own copy now
    corruptOnDisk(fixture.engine, pattern); // the block only the snapshot holds

    const run = await fails(1, /^weft: snapshot "held@before" has 1 bad block$/, 'volume', 'verify', 'held@before');
    expect(run.stdout).toBe('verified snapshot "held@before": 2 blocks checked, 1 bad block\nbad block at offset 8192\n');
    expect(await ok('volume', 'verify', 'held')).toBe('verified volume "held": 2 blocks checked, no bad blocks\n');
    expect(fixture.engine.listSnapshots('held')[0].checksumErrors).toBe(1);
    expect(fixture.engine.getVolume('held').checksumErrors).toBe(0);
    await fails(1, /^weft: snapshot held@after does not exist$/, 'volume', 'verify', 'held@after');
    await fails(2, /^weft: snapshot is required$/, 'volume', 'verify', 'held@');
  });
});

describe('weft pool and node', () => {
  it('lists the pool', async () => {
    const lines = (await ok('pool', 'list')).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CLASS\s+STATE\s+CAPACITY\s+USED\s+USED%\s+PROVISIONED\s+MEMBERS$/);
    expect(lines[1]).toMatch(new RegExp(`^default\\s+ok\\s+\\d+(\\.\\d+)? [KMG]iB\\s+.*${fixture.dataDir}`));
    const [pool] = await okJson<PoolInfo[]>('pool', 'list');
    expect(pool.class).toBe('default');
    expect(pool.state).toBe('ok');
    expect(typeof pool.capacityBytes).toBe('number');
  });

  it('shows the node', async () => {
    const text = await ok('node', 'info');
    expect(text).toMatch(/^Node ID:\s+test-node$/m);
    expect(text).toMatch(new RegExp(`^API port:\\s+${fixture.port}$`, 'm'));
    expect(text).toMatch(/^Uptime:\s+(\d+[dhm] )*\d+s$/m); // the suite may run past a minute on a busy machine
    const node = await okJson<NodeStatus>('node', 'info');
    expect(node).toMatchObject({ nodeId: 'test-node', apiPort: fixture.port, dataDir: fixture.dataDir, nbdPort: 10809 });
  });
});
