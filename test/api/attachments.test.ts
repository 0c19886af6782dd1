// The attachment records' file: a change that cannot be written changes nothing, and says why as a
// failure of the disk (UNAVAILABLE), not of weftd. The file is made unwritable by putting a
// non-empty directory where it goes (the rename onto it fails, even for root).

import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { AttachmentStore } from '../../fabric/api/attachments';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

afterAll(cleanupAll);

const attachment = (volume: string) => ({ volume, nodeId: 'n1', devicePath: '/dev/loop3', method: 'nbdfuse-loop', stagingPath: `/staging/${volume}`, workloads: [] });

function blockFile(dataDir: string): () => void {
  const file = path.join(dataDir, 'attachments.json');
  fs.rmSync(file, { force: true });
  fs.mkdirSync(path.join(file, 'in-the-way'), { recursive: true });
  return () => fs.rmSync(file, { recursive: true });
}

test('a record that cannot be saved fails as UNAVAILABLE and changes nothing, in memory or after a restart', () => {
  const dataDir = makeTempDir('weft-attachments-');
  const store = new AttachmentStore(dataDir, pino({ level: 'silent' }));
  store.record(attachment('a'));
  const unblock = blockFile(dataDir);
  expect(() => store.record(attachment('b'))).toThrow(expect.objectContaining({ kind: 'UNAVAILABLE', message: expect.stringMatching(/attachment records could not be written to /) }));
  expect(store.list().map((r) => r.volume)).toEqual(['a']);
  unblock();
  store.record(attachment('c'));
  expect(new AttachmentStore(dataDir, pino({ level: 'silent' })).list().map((r) => r.volume)).toEqual(['a', 'c']);
});

test('a removal that cannot be saved fails as UNAVAILABLE, and the attachment (its device detached already) is forgotten here all the same', () => {
  const dataDir = makeTempDir('weft-attachments-');
  const store = new AttachmentStore(dataDir, pino({ level: 'silent' }));
  store.record(attachment('a'));
  store.record(attachment('b'));
  const unblock = blockFile(dataDir);
  expect(() => store.remove('a', 'n1')).toThrow(expect.objectContaining({ kind: 'UNAVAILABLE' }));
  expect(store.list().map((r) => r.volume)).toEqual(['b']);
  unblock();
  store.record(attachment('c'));
  expect(new AttachmentStore(dataDir, pino({ level: 'silent' })).list().map((r) => r.volume)).toEqual(['b', 'c']);
});

test("a deleted volume's records are forgotten even when the file cannot be written then; the next change writes it without them", () => {
  const dataDir = makeTempDir('weft-attachments-');
  const store = new AttachmentStore(dataDir, pino({ level: 'silent' }));
  store.record(attachment('gone'));
  store.record(attachment('kept'));
  const unblock = blockFile(dataDir);
  store.removeVolume('gone'); // the volume is deleted already: no error for the caller
  expect(store.list().map((r) => r.volume)).toEqual(['kept']);
  unblock();
  store.record(attachment('new'));
  expect(new AttachmentStore(dataDir, pino({ level: 'silent' })).list().map((r) => r.volume)).toEqual(['kept', 'new']);
});
