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

/**
 * A store holding the attachments of `volumes`; `change` runs on it while its file cannot be written
 * (a non-empty directory where the file goes). Resolves with the volumes it then lists, and those a
 * new store reads from the file after one more record ("later") once the file can be written again.
 */
function whileUnwritable(volumes: string[], change: (store: AttachmentStore) => void): { listed: string[]; afterRestart: string[] } {
  const dataDir = makeTempDir('weft-attachments-');
  const store = new AttachmentStore(dataDir, pino({ level: 'silent' }));
  for (const volume of volumes) store.record(attachment(volume));
  const file = path.join(dataDir, 'attachments.json');
  fs.rmSync(file, { force: true });
  fs.mkdirSync(path.join(file, 'in-the-way'), { recursive: true });
  change(store);
  const listed = store.list().map((r) => r.volume);
  fs.rmSync(file, { recursive: true });
  store.record(attachment('later'));
  return { listed, afterRestart: new AttachmentStore(dataDir, pino({ level: 'silent' })).list().map((r) => r.volume) };
}

test('a record that cannot be saved fails as UNAVAILABLE and changes nothing, in memory or after a restart', () => {
  const refused = (store: AttachmentStore) =>
    expect(() => store.record(attachment('b'))).toThrow(expect.objectContaining({ kind: 'UNAVAILABLE', message: expect.stringMatching(/attachment records could not be written to /) }));
  expect(whileUnwritable(['a'], refused)).toEqual({ listed: ['a'], afterRestart: ['a', 'later'] });
});

test('a removal that cannot be saved fails as UNAVAILABLE, and the attachment (its device detached already) is forgotten here all the same', () => {
  const refused = (store: AttachmentStore) => expect(() => store.remove('a', 'n1')).toThrow(expect.objectContaining({ kind: 'UNAVAILABLE' }));
  expect(whileUnwritable(['a', 'b'], refused)).toEqual({ listed: ['b'], afterRestart: ['b', 'later'] });
});

test("a deleted volume's records are forgotten even when the file cannot be written then; the next change writes it without them", () => {
  // The volume is deleted already: no error for the caller.
  expect(whileUnwritable(['gone', 'kept'], (store) => store.removeVolume('gone'))).toEqual({ listed: ['kept'], afterRestart: ['kept', 'later'] });
});

test('a removal asked again once the file can be written writes it, though the attachment is forgotten already', () => {
  const dataDir = makeTempDir('weft-attachments-');
  const store = new AttachmentStore(dataDir, pino({ level: 'silent' }));
  store.record(attachment('a'));
  const file = path.join(dataDir, 'attachments.json');
  fs.rmSync(file, { force: true });
  fs.mkdirSync(path.join(file, 'in-the-way'), { recursive: true });
  expect(() => store.remove('a', 'n1')).toThrow(expect.objectContaining({ kind: 'UNAVAILABLE' }));
  fs.rmSync(file, { recursive: true });
  fs.writeFileSync(file, JSON.stringify([{ ...attachment('a'), attachedAt: new Date().toISOString() }])); // what the file held before
  store.remove('a', 'n1'); // the CSI node service's retry: it answered OK and wrote nothing
  expect(new AttachmentStore(dataDir, pino({ level: 'silent' })).list()).toEqual([]);
});

test('a file whose records are not records (hand-edited, damaged) is logged, and weftd starts without them', () => {
  const dataDir = makeTempDir('weft-attachments-');
  fs.writeFileSync(path.join(dataDir, 'attachments.json'), JSON.stringify([null, { volume: 'a' }]));
  const lines: string[] = [];
  const store = new AttachmentStore(dataDir, pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }));
  expect(store.list()).toEqual([]);
  expect(lines.join('')).toMatch(/attachment records are damaged/);
});
