// A real weftd served to real NBD clients from Debian: qemu-io, qemu-img, nbdcopy, nbdinfo and fio.
// Each test makes its own volume on one shared daemon.

import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { MAX_VOLUME_BYTES } from '../../fabric/volume/types';
import { ERR, RawNbdClient } from '../helpers/nbd-raw-client';
import { cleanupAll, makeTempDir, run, RunResult, startWeftd, WeftdHandle } from '../helpers/weftd';

let weftd: WeftdHandle;
let work: string;

beforeAll(async () => {
  weftd = await startWeftd({ pools: [`default:${makeTempDir('weft-pool-')}:2GiB`] });
  work = makeTempDir('weft-e2e-');
});
afterAll(cleanupAll);

async function ok(result: Promise<RunResult>): Promise<RunResult> {
  const r = await result;
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r;
}

async function createVolume(name: string, size = '256MiB'): Promise<void> {
  await ok(weftd.weft(['volume', 'create', name, '--size', size]));
}

function qemuIo(uri: string, ...commands: string[]): Promise<RunResult> {
  // Snapshots (VOL@SNAP) are read-only exports: qemu must open them read-only.
  const readOnly = uri.includes('@') ? ['-r'] : [];
  return run('qemu-io', ['-f', 'raw', ...readOnly, ...commands.flatMap((c) => ['-c', c]), uri]);
}

test('qemu-io writes and reads back patterns; a wrong pattern is detected', async () => {
  await createVolume('patterns');
  const uri = weftd.nbdUri('patterns');
  await ok(qemuIo(uri, 'write -P 0xab 0 1M', 'write -P 0xcd 1M 64k', 'write -P 0x11 3000 5000', 'flush'));
  await ok(qemuIo(uri, 'read -P 0xab 0 3000', 'read -P 0x11 3000 5000', 'read -P 0xab 8000 1040576', 'read -P 0xcd 1M 64k'));
  const wrong = await qemuIo(uri, 'read -P 0xcd 0 4k');
  expect(wrong.stdout + wrong.stderr).toMatch(/Pattern verification failed/);
});

test('nbdinfo shows size, flags and block sizes; snapshots are listed, read-only and offer nothing that writes', async () => {
  await createVolume('info', '100MiB');
  const info = JSON.parse((await ok(run('nbdinfo', ['--json', weftd.nbdUri('info')]))).stdout);
  const exp = info.exports[0];
  expect(info.protocol).toBe('newstyle-fixed');
  expect(exp).toMatchObject({
    'export-size': 100 * 1024 * 1024,
    is_read_only: false,
    can_flush: true,
    can_fua: true,
    can_trim: true,
    can_zero: true,
    can_fast_zero: false,
    can_multi_conn: true,
    block_size_minimum: 1,
    block_size_preferred: 4096,
  });
  expect(exp.contexts).toContain('base:allocation');
  await ok(weftd.weft(['snapshot', 'create', 'info', 'first']));
  const list = (await ok(run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${weftd.nbdPort}`]))).stdout;
  const names = JSON.parse(list).exports.map((e: { 'export-name': string }) => e['export-name']);
  expect(names).toEqual(expect.arrayContaining(['info', 'info@first']));
  const snap = JSON.parse((await ok(run('nbdinfo', ['--json', weftd.nbdUri('info@first')]))).stdout).exports[0];
  expect(snap).toMatchObject({ is_read_only: true, can_flush: true, can_fua: false, can_trim: false, can_zero: false, can_fast_zero: false, can_multi_conn: true });
  const growable = JSON.parse((await ok(run('nbdinfo', ['--json', weftd.nbdUri('info~growable')]))).stdout).exports[0];
  expect(growable).toMatchObject({ is_read_only: false, can_fua: true, can_trim: true, can_zero: true, can_fast_zero: false, can_multi_conn: true });
  const write = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', weftd.nbdUri('info@first')]);
  expect(write.code).not.toBe(0);
});

test('VOL~growable: one connection keeps working while the volume grows under it', async () => {
  const MiB = 1024 * 1024;
  await createVolume('grows', '1MiB');
  const size = await ok(run('nbdinfo', ['--size', weftd.nbdUri('grows~growable')]));
  expect(Number(size.stdout.trim())).toBe(MAX_VOLUME_BYTES);
  const { client } = await RawNbdClient.open(weftd.nbdPort, 'grows~growable');
  try {
    expect(await client.write(0, Buffer.alloc(4096, 0x61))).toBe(0);
    expect(await client.write(MiB, Buffer.alloc(4096, 0x62))).toBe(ERR.ENOSPC); // past the volume's end
    const across = await client.readData(MiB - 4096, 8192); // the last block, then past the end
    expect(across.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    expect(across.subarray(4096).every((b) => b === 0)).toBe(true);

    await ok(weftd.weft(['volume', 'resize', 'grows', '--size', '2MiB']));
    expect(await client.write(MiB, Buffer.alloc(4096, 0x62))).toBe(0); // same connection, new space
    expect((await client.readData(MiB, 4096)).every((b) => b === 0x62)).toBe(true);
  } finally {
    client.destroy();
  }
  await ok(qemuIo(weftd.nbdUri('grows'), 'read -P 0x61 0 4k', 'read -P 0x62 1M 4k', 'read -P 0 1028k 1020k'));
  const list = (await ok(run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${weftd.nbdPort}`]))).stdout;
  expect(JSON.parse(list).exports.map((e: { 'export-name': string }) => e['export-name'])).not.toContain('grows~growable');
  await ok(weftd.weft(['snapshot', 'create', 'grows', 's1']));
  expect((await run('nbdinfo', ['--size', weftd.nbdUri('grows@s1~growable')])).code).not.toBe(0); // snapshots do not grow
});

test('nbdcopy of 64 MiB of random data in and out is byte-identical', async () => {
  await createVolume('copy', '64MiB');
  const source = path.join(work, 'random.raw');
  fs.writeFileSync(source, crypto.randomBytes(64 * 1024 * 1024));
  await ok(run('nbdcopy', [source, weftd.nbdUri('copy')]));
  const back = path.join(work, 'back.raw');
  await ok(run('nbdcopy', [weftd.nbdUri('copy'), back]));
  await ok(run('cmp', [source, back]));
  await ok(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, weftd.nbdUri('copy')]));
  fs.rmSync(back);
});

test('a snapshot is isolated from later writes and a clone is independent of both', async () => {
  await createVolume('origin', '64MiB');
  const origin = weftd.nbdUri('origin');
  await ok(qemuIo(origin, 'write -P 0xaa 0 4M', 'flush'));
  await ok(weftd.weft(['snapshot', 'create', 'origin', 'before']));
  await ok(qemuIo(origin, 'write -P 0xbb 0 1M', 'flush'));
  await ok(qemuIo(weftd.nbdUri('origin@before'), 'read -P 0xaa 0 4M'));

  await ok(weftd.weft(['volume', 'create', 'copy-of-origin', '--from-snapshot', 'origin@before']));
  const clone = weftd.nbdUri('copy-of-origin');
  await ok(qemuIo(clone, 'read -P 0xaa 0 4M'));
  await ok(qemuIo(clone, 'write -P 0xcc 1M 1M', 'flush'));
  await ok(qemuIo(origin, 'read -P 0xbb 0 1M', 'read -P 0xaa 1M 3M'));
  await ok(qemuIo(weftd.nbdUri('origin@before'), 'read -P 0xaa 0 4M'));
  await ok(qemuIo(clone, 'read -P 0xaa 0 1M', 'read -P 0xcc 1M 1M', 'read -P 0xaa 2M 2M'));

  // Revert discards what came after the snapshot.
  await ok(weftd.weft(['volume', 'revert', 'origin@before']));
  await ok(qemuIo(origin, 'read -P 0xaa 0 4M'));
});

test('TRIM and WRITE_ZEROES read back as zeroes and free space; qemu-img map sees the holes', async () => {
  await createVolume('holes', '64MiB');
  const uri = weftd.nbdUri('holes');
  await ok(qemuIo(uri, 'write -P 0x77 0 8M', 'flush'));
  const before = JSON.parse((await ok(weftd.weft(['volume', 'show', 'holes', '--output', 'json']))).stdout);
  expect(before.allocatedBytes).toBe(8 * 1024 * 1024);
  // write -z -u lets the server punch a hole (no NBD_CMD_FLAG_NO_HOLE).
  await ok(qemuIo(uri, 'discard 0 2M', 'write -z -u 4M 1M', 'flush'));
  await ok(qemuIo(uri, 'read -P 0 0 2M', 'read -P 0x77 2M 2M', 'read -P 0 4M 1M', 'read -P 0x77 5M 3M'));
  const after = JSON.parse((await ok(weftd.weft(['volume', 'show', 'holes', '--output', 'json']))).stdout);
  expect(after.allocatedBytes).toBe(5 * 1024 * 1024);

  const map = JSON.parse((await ok(run('qemu-img', ['map', '--output=json', '-f', 'raw', uri]))).stdout) as {
    start: number;
    length: number;
    data: boolean;
    zero: boolean;
  }[];
  const dataRanges = map.filter((m) => m.data).map((m) => [m.start, m.length]);
  expect(dataRanges).toEqual([
    [2 * 1024 * 1024, 2 * 1024 * 1024],
    [5 * 1024 * 1024, 3 * 1024 * 1024],
  ]);
  expect(map.filter((m) => !m.data).every((m) => m.zero)).toBe(true);
});

test('fio with the nbd engine writes and verifies crc32c at queue depth 32', async () => {
  await createVolume('fio', '128MiB');
  const output = path.join(work, 'fio.json');
  await ok(
    run('fio', [
      '--name=verify', '--ioengine=nbd', `--uri=${weftd.nbdUri('fio')}`, '--rw=randwrite', '--bs=4k', '--iodepth=32',
      '--size=64M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
      '--output-format=json', `--output=${output}`,
    ], { cwd: work }),
  );
  const job = JSON.parse(fs.readFileSync(output, 'utf8')).jobs[0];
  expect(job.error).toBe(0);
  expect(job.write.io_bytes).toBe(64 * 1024 * 1024);
  expect(job.read.io_bytes).toBe(64 * 1024 * 1024); // the verify pass read everything back
});

test('a block altered on disk behind weftd reads as an I/O error and verify reports it', async () => {
  const poolDir = makeTempDir('weft-corrupt-');
  const node = await startWeftd({ pools: [`default:${poolDir}:256MiB`] });
  await ok(node.weft(['volume', 'create', 'victim', '--size', '16MiB']));
  const marker = 'weft-e2e-corruption-marker';
  const block = path.join(work, 'marker.raw');
  fs.writeFileSync(block, Buffer.concat([Buffer.from(marker), Buffer.alloc(4096 - marker.length, 0x42)]));
  await ok(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 1M', '-c', `write -s ${block} 64k 4k`, '-c', 'flush', node.nbdUri('victim')]));
  const poolFile = path.join(poolDir, 'weft-pool-default.img');
  const image = fs.readFileSync(poolFile);
  const at = image.indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const fd = fs.openSync(poolFile, 'r+');
  fs.writeSync(fd, Buffer.from([0x00]), 0, 1, at + 1000);
  fs.closeSync(fd);

  const read = await run('qemu-io', ['-f', 'raw', '-c', 'read 64k 4k', node.nbdUri('victim')]);
  expect(read.stdout + read.stderr).toMatch(/Input\/output error/);
  await ok(run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x42 0 64k', node.nbdUri('victim')]));
  const verify = await node.weft(['volume', 'verify', 'victim']);
  expect(verify.code).toBe(1);
  expect(verify.stdout).toMatch(/65536/);
  const show = JSON.parse((await ok(node.weft(['volume', 'show', 'victim', '--output', 'json']))).stdout);
  expect(show.checksumErrors).toBeGreaterThanOrEqual(2);
  const metrics = await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`).then((r) => r.text());
  expect(metrics).toMatch(/weft_volume_errors_total\{volume="victim",operation="read",kind="checksum"\} [1-9]/);
  expect(metrics).toMatch(/weft_volume_checksum_errors_total\{volume="victim"\} [1-9]/);
  await node.stop();
});

test("a snapshot's block altered on disk reads as an I/O error, is counted under VOL@SNAP, and verify VOL@SNAP reports it", async () => {
  const poolDir = makeTempDir('weft-corrupt-snapshot-');
  const node = await startWeftd({ pools: [`default:${poolDir}:256MiB`] });
  await ok(node.weft(['volume', 'create', 'kept', '--size', '16MiB']));
  const marker = 'weft-e2e-snapshot-corruption-marker';
  const block = path.join(work, 'snapshot-marker.raw');
  fs.writeFileSync(block, Buffer.concat([Buffer.from(marker), Buffer.alloc(4096 - marker.length, 0x42)]));
  await ok(run('qemu-io', ['-f', 'raw', '-c', `write -s ${block} 64k 4k`, '-c', 'flush', node.nbdUri('kept')]));
  await ok(node.weft(['snapshot', 'create', 'kept', 'before']));
  await ok(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x17 64k 4k', '-c', 'flush', node.nbdUri('kept')]));
  const poolFile = path.join(poolDir, 'weft-pool-default.img');
  const at = fs.readFileSync(poolFile).indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const fd = fs.openSync(poolFile, 'r+');
  fs.writeSync(fd, Buffer.from([0x00]), 0, 1, at + 1000);
  fs.closeSync(fd);

  const read = await qemuIo(node.nbdUri('kept@before'), 'read 64k 4k');
  expect(read.stdout + read.stderr).toMatch(/Input\/output error/);
  const verify = await node.weft(['volume', 'verify', 'kept@before']);
  expect(verify.code).toBe(1);
  expect(verify.stdout).toBe('verified snapshot "kept@before": 1 blocks checked, 1 bad block\nbad block at offset 65536\n');
  await ok(node.weft(['volume', 'verify', 'kept']));
  const metrics = await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`).then((r) => r.text());
  expect(metrics).toMatch(/^weft_volume_checksum_errors_total\{volume="kept@before"\} 2$/m); // the read and the verify
  expect(metrics).toMatch(/^weft_volume_checksum_errors_total\{volume="kept"\} 0$/m);
  await node.stop();
});
