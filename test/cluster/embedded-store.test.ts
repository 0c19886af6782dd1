// The embedded cluster store: the common suite, then what only a local file must do: keep every
// acknowledged change across kill -9, drop a crash's torn tail, refuse a damaged file, forget the
// leases of a dead process, and keep its file small.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { StoreCompactedError } from '../../fabric/cluster/cluster-store';
import { EmbeddedStore, STORE_FILE } from '../../fabric/cluster/embedded-store';
import { encodeFrame, parseLog, writeSnapshotFile } from '../../fabric/cluster/store-log';
import { createLogger, type Logger } from '../../fabric/logger';
import { storeWriterValue } from '../helpers/store-writer-child';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run, track } from '../helpers/weftd';
import { describeClusterStore } from './store-conformance';

const silent = createLogger('silent', 'test');
const WRITER = path.resolve(__dirname, '..', 'helpers', 'store-writer-child.js');

afterAll(cleanupAll);

describeClusterStore('embedded', () => EmbeddedStore.open(makeTempDir('weft-store-'), silent));

/** A logger that keeps its lines, to check a warning. */
function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }), lines };
}

async function storeWith(entries: Record<string, string>): Promise<string> {
  const dir = makeTempDir('weft-store-');
  const store = await EmbeddedStore.open(dir, silent);
  for (const [key, value] of Object.entries(entries)) await store.put(key, value);
  await store.close();
  return dir;
}

async function contents(dir: string): Promise<Record<string, string>> {
  const store = await EmbeddedStore.open(dir, silent);
  const entries = await store.list('');
  await store.close();
  return Object.fromEntries(entries.map((entry) => [entry.key, entry.value]));
}

const HEADER = 12;

/** The end of the frame that holds byte `inside`: frames are walked from the file's start by their lengths. */
function frameEndAt(data: Buffer, inside: number): number {
  let offset = 0;
  while (offset + HEADER + data.readUInt32LE(offset) <= inside) offset += HEADER + data.readUInt32LE(offset);
  return offset + HEADER + data.readUInt32LE(offset);
}

describe('embedded cluster store file', () => {
  it('keeps every acknowledged change across kill -9, while its file is rewritten as it grows', async () => {
    const dir = makeTempDir('weft-store-');
    const child = track(spawn(process.execPath, [WRITER, dir], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const acked: number[] = [];
    let partial = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) acked.push(Number(line.split(' ')[1]));
      // At once, while puts are in flight. 3000 puts of 2 KiB: the file passes its 1 MiB and then 4 MiB rewrite thresholds.
      if (acked.length >= 3000) child.kill('SIGKILL');
    });
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, 60_000, 20);

    const found = await contents(dir);
    const missing = acked.filter((n) => found[`key/${n}`] !== storeWriterValue(n));
    expect(missing).toEqual([]);
  });

  it('drops the torn tail of a crash with a warning, then works on', async () => {
    const dir = await storeWith({ a: '1', b: '2' });
    const file = path.join(dir, STORE_FILE);
    const whole = fs.statSync(file).size;
    const torn = encodeFrame({ revision: 4, ops: [{ type: 'put', key: 'c', value: '3' }] });
    fs.appendFileSync(file, torn.subarray(0, torn.length - 3));

    const { logger, lines } = recordingLogger();
    const store = await EmbeddedStore.open(dir, logger);
    expect(lines.join('')).toMatch(/torn tail/);
    expect(fs.statSync(file).size).toBe(whole);
    // Kept aside, should it have been damage rather than a crash.
    expect(fs.readFileSync(`${file}.dropped-tail`)).toEqual(torn.subarray(0, torn.length - 3));
    await store.put('c', 'after');
    await store.close();
    fs.appendFileSync(file, Buffer.alloc(4096)); // a tail of zeroes, as a file grown by a crash may have
    expect(await contents(dir)).toEqual({ a: '1', b: '2', c: 'after' });
  });

  // A store file that cannot be seen is not one to make afresh: the node would start on an empty
  // store for good, its volume records and claims gone, once the file came back.
  it('refuses to start where its file is a link to nothing (a file system not mounted yet), and makes none', async () => {
    const dir = makeTempDir('weft-store-');
    const file = path.join(dir, STORE_FILE);
    fs.symlinkSync(path.join(dir, 'not-mounted', STORE_FILE), file);
    await expect(EmbeddedStore.open(dir, silent)).rejects.toThrow(/ENOENT/);
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true);
  });

  it('a close just after the write that sets off a rewrite waits for the rewrite, and leaves no handle of the file open', async () => {
    const dir = makeTempDir('weft-store-');
    const file = path.join(dir, STORE_FILE);
    const store = await EmbeddedStore.open(dir, silent);
    const value = 'x'.repeat(4096);
    // Up to the last put before the file reaches the 1 MiB it is rewritten at; that put sets it off.
    for (let n = 0; fs.statSync(file).size + 2 * 4096 < 1024 * 1024; n++) await store.put(`k${n % 10}`, value);
    const last = 'y'.repeat(16 * 1024);
    await store.put('last', last);
    await store.close();
    await new Promise((resolve) => setTimeout(resolve, 500)); // a rewrite close did not wait for would end meanwhile
    const open = fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false; // closed meanwhile
      }
    });
    expect(open).toEqual([]);
    expect(fs.statSync(file).size).toBeLessThan(64 * 1024); // rewritten as one snapshot
    expect((await contents(dir)).last).toBe(last);
  });

  it('drops a last write torn in its middle (a page lost, later ones on disk): the changes synced together are one frame, and none of them was acknowledged', async () => {
    const dir = makeTempDir('weft-store-');
    const store = await EmbeddedStore.open(dir, silent);
    await store.put('a', '1');
    // c is written at once; d and e, asked for meanwhile, are written and synced together after it.
    await Promise.all(['c', 'd', 'e'].map((key) => store.put(key, key.repeat(4096))));
    const file = path.join(dir, STORE_FILE);
    const data = fs.readFileSync(file); // as a crash leaves it (a clean close rewrites the file as one snapshot)
    await store.close();
    expect(Object.keys(await contents(dir))).toEqual(['a', 'c', 'd', 'e']);

    const cEnd = frameEndAt(data, data.indexOf('"key":"c"'));
    const firstPage = (Math.floor((cEnd + HEADER) / 4096) + 1) * 4096; // the first whole page of d and e's write
    expect(firstPage + 4096).toBeLessThan(data.length); // a later page of it reached the disk
    data.fill(0, firstPage, firstPage + 4096);
    fs.writeFileSync(file, data);

    const { logger, lines } = recordingLogger();
    const reopened = await EmbeddedStore.open(dir, logger);
    expect(lines.join('')).toMatch(/torn tail/);
    expect(fs.statSync(file).size).toBe(cEnd);
    await reopened.close();
    expect(Object.keys(await contents(dir))).toEqual(['a', 'c']);
  });

  it('a clean close leaves a file of one record per frame (a snapshot), as weft versions before groups read', async () => {
    const dir = makeTempDir('weft-store-');
    const store = await EmbeddedStore.open(dir, silent);
    await Promise.all(['a', 'b', 'c'].map((key) => store.put(key, key)));
    await store.close();
    const data = fs.readFileSync(path.join(dir, STORE_FILE));
    expect(HEADER + data.readUInt32LE(0)).toBe(data.length);
    expect(JSON.parse(data.subarray(HEADER).toString())).toMatchObject({ snapshot: { format: 1 } });
    expect(await contents(dir)).toEqual({ a: 'a', b: 'b', c: 'c' });
  });

  it('refuses a file whose snapshot (its first record, written whole) is damaged, though nothing follows it', async () => {
    const dir = await storeWith({ a: '1' });
    const file = path.join(dir, STORE_FILE);
    const data = fs.readFileSync(file);
    const snapshotEnd = HEADER + data.readUInt32LE(0);
    const damagedSnapshot = Buffer.from(data.subarray(0, snapshotEnd));
    damagedSnapshot[HEADER + 2] ^= 0x20;
    fs.writeFileSync(file, damagedSnapshot);
    await expect(EmbeddedStore.open(dir, silent)).rejects.toThrow(/is damaged: its first record \(a snapshot, written whole\) fails its checksum/);
    expect(fs.readFileSync(file).equals(damagedSnapshot)).toBe(true);
  });

  it('refuses a file damaged before its end, and leaves it as it is', async () => {
    const dir = await storeWith({ a: '1', b: '2', c: '3' });
    const file = path.join(dir, STORE_FILE);
    const data = fs.readFileSync(file);
    const second = 12 + data.readUInt32LE(0); // the first record (a snapshot) is 12 bytes of header and its payload
    data[second + 12 + 2] ^= 0x20;
    fs.writeFileSync(file, data);

    await expect(EmbeddedStore.open(dir, silent)).rejects.toThrow(
      new RegExp(`cluster store file ${file} is damaged: the record at byte ${second} fails its checksum`),
    );
    expect(fs.readFileSync(file).equals(data)).toBe(true);
  });

  it('forgets the leases of the process before: their keys are gone when it opens again', async () => {
    const dir = makeTempDir('weft-store-');
    const store = await EmbeddedStore.open(dir, silent);
    const lease = await store.grantLease(60);
    await store.put('nodes/a', 'up', { lease: lease.id });
    await store.put('volumes/v', 'kept');
    const revision = await store.revision();
    await store.close();

    const reopened = await EmbeddedStore.open(dir, silent);
    expect(await reopened.get('nodes/a')).toBeUndefined();
    expect((await reopened.get('volumes/v'))?.value).toBe('kept');
    expect(await reopened.revision()).toBe(revision + 1);
    await reopened.close();
  });

  it('a rewrite that fails settles every change waiting on it: the one written before resolves, those it covered are refused', async () => {
    const dir = makeTempDir('weft-store-');
    const store = await EmbeddedStore.open(dir, silent);
    fs.mkdirSync(path.join(dir, `${STORE_FILE}.tmp`)); // the rewrite's temp file cannot be made (as on a full or failing disk)
    const settled = (change: Promise<unknown>) => change.then(() => 'resolved', (err: Error) => `refused: ${err.message}`);
    // The first change makes the file big enough to be rewritten; the others wait meanwhile.
    const changes = [
      settled(store.put('a', 'x'.repeat(1100 * 1024))),
      settled(store.put('b', 'y')),
      settled(store.txn({ compare: [], success: [{ type: 'put', key: 'c', value: 'z' }] })),
    ];
    const outcomes = await Promise.race([Promise.all(changes), new Promise((resolve) => setTimeout(() => resolve('still waiting'), 5000).unref())]);
    expect(outcomes).toEqual(['resolved', expect.stringMatching(/^refused: cluster store file .* a write failed/), expect.stringMatching(/^refused: /)]);
    fs.rmdirSync(path.join(dir, `${STORE_FILE}.tmp`));
    await expect(store.close()).rejects.toThrow(/a write failed/); // not a clean close: weftd's stop says so (exit 1)
  });

  it('rewrites its file once it has grown, after which a watch from before the rewrite is refused', async () => {
    const dir = makeTempDir('weft-store-');
    const store = await EmbeddedStore.open(dir, silent);
    // 200 keys of 2 KiB, each written 4 times: 1.6 MiB of changes, 400 KiB of data.
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 200 }, (_, n) => store.put(`k/${n}`, storeWriterValue(round))));
    }
    await store.close();
    // Without the rewrite it would hold all 1.7 MB of changes.
    expect(fs.statSync(path.join(dir, STORE_FILE)).size).toBeLessThan(1.5 * 1024 * 1024);

    const reopened = await EmbeddedStore.open(dir, silent);
    await expect(reopened.watch('k/', { fromRevision: 2 }, () => undefined)).rejects.toThrow(StoreCompactedError);
    const events: string[] = [];
    const watch = await reopened.watch('k/', { fromRevision: (await reopened.revision()) + 1 }, (event) => events.push(event.key));
    await reopened.put('k/new', 'x');
    await waitFor(() => events.length === 1);
    expect(events).toEqual(['k/new']);
    await watch.close();
    await reopened.close();
  });
});

// A write may take only part of what it is given when the file system fills up, without an error:
// a rewrite of the store cut short that way replaced the store with a file no start could read.
describe('on a file system that fills up', () => {
  let dir: string;
  beforeAll(async () => {
    dir = makeTempDir('weft-store-full-');
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'weft-test-full', dir]);
    if (mounted.code !== 0) throw new Error(`mount tmpfs: ${mounted.stderr}`);
  });
  afterAll(async () => {
    await run('umount', [dir]);
  });

  it('a rewrite that does not fit fails with ENOSPC, and leaves the file as it was, with no partial copy taking room', async () => {
    const file = path.join(dir, STORE_FILE);
    await writeSnapshotFile(file, { revision: 1, keys: 'small' });
    const before = fs.readFileSync(file);
    const big = { revision: 2, keys: crypto.randomBytes(200 * 1024).toString('base64') };
    await expect(writeSnapshotFile(file, big)).rejects.toThrow(/ENOSPC/);
    expect(fs.readFileSync(file)).toEqual(before);
    expect(parseLog(fs.readFileSync(file), file).records).toEqual([{ revision: 1, keys: 'small' }]);
    expect(fs.readdirSync(dir)).toEqual([STORE_FILE]);
  });
});
