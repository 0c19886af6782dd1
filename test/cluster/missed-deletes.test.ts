// The word of snapshot deletes that copies missed (missed-deletes.ts), on a real embedded store: it
// is written only while the volume's record is as it was read before the delete, since a snapshot
// of the name taken meanwhile changes the record and must not be deleted in the old one's place.

import { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import { addMissedDeletes, clearMissedDeletes, missedDeletes } from '../../fabric/cluster/missed-deletes';
import { volumeKey } from '../../fabric/cluster/volume-record';
import { createLogger } from '../../fabric/logger';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

let store: EmbeddedStore;

beforeEach(async () => {
  store = await EmbeddedStore.open(makeTempDir('weft-missed-'), createLogger('silent', 'test'));
  await store.put(volumeKey('v'), JSON.stringify({ name: 'v', epoch: 1 }));
});

afterEach(async () => {
  await store.close();
});

afterAll(cleanupAll);

test('written per node while the record is as read; once it has changed (a snapshot taken since), nothing is written', async () => {
  const before = (await store.get(volumeKey('v')))!;
  expect(await addMissedDeletes(store, 'v', 's', ['n2', 'n3'], before)).toBe(true);
  expect(await addMissedDeletes(store, 'v', 't', ['n2'], before)).toBe(true);
  expect(await missedDeletes(store, 'v')).toEqual({ n2: ['s', 't'], n3: ['s'] });

  await store.put(volumeKey('v'), JSON.stringify({ name: 'v', epoch: 1, snapshotting: 'u' }));
  expect(await addMissedDeletes(store, 'v', 'u', ['n2'], before)).toBe(false);
  expect(await missedDeletes(store, 'v')).toEqual({ n2: ['s', 't'], n3: ['s'] });
});

test('cleared per node and snapshot; the nodes the record no longer names go; the key goes with the last', async () => {
  const record = (await store.get(volumeKey('v')))!;
  await addMissedDeletes(store, 'v', 's', ['n2', 'n3'], record);
  await clearMissedDeletes(store, 'v', 'n2', ['s'], ['n1', 'n2', 'n3']);
  expect(await missedDeletes(store, 'v')).toEqual({ n3: ['s'] });
  await clearMissedDeletes(store, 'v', 'n1', [], ['n1', 'n2']); // n3 replaced
  expect(await store.get('missed-snapshot-deletes/v')).toBeUndefined();
});
