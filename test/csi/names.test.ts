// The mapping from CSI names to Weft names (pure, so idempotency needs no state) and the snapshot
// ids "VOLUME@SNAPSHOT".

import { cloneSnapshotName, isCloneSnapshot, isWeftName, parseSnapshotId, snapshotId, weftName } from '../../adapters/csi/names';

describe('weftName', () => {
  it.each(['pvc-0b7c8f3e-6f1a-4c7e-9d55-2f0b1d3c4e5f', 'data', 'a.b_c-d', 'x'.repeat(63)])('keeps %s, already a Weft name', (name) => {
    expect(weftName(name)).toBe(name);
  });

  it.each([
    ['a name longer than 63 characters', 'a'.repeat(128)],
    ['a slash and a space', 'team/db data'],
    ['non-ASCII letters', 'données-ü'],
    ['a leading dash', '-data'],
    ['a name that ends like a hashed one', 'data.h0123456789abcdef'],
    ['a name shaped like a hidden clone snapshot', 'csi-clone.0123456789abcdef'],
  ])('maps %s to a valid, readable, hashed name', (_, name) => {
    const mapped = weftName(name);
    expect(isWeftName(mapped)).toBe(true);
    expect(mapped).toMatch(/\.h[0-9a-f]{16}$/);
    expect(mapped).not.toBe(name);
  });

  it('is deterministic and keeps a readable prefix', () => {
    const name = `pvc-${'7'.repeat(100)}`;
    expect(weftName(name)).toBe(weftName(name));
    expect(weftName(name).startsWith('pvc-777')).toBe(true);
  });

  it('maps different names to different Weft names, even when they share their first 44 characters', () => {
    const base = 'p'.repeat(60);
    const names = [`${base}-one`, `${base}-two`, `${base}/one`, 'data', 'data.h0123456789abcdef'];
    expect(new Set(names.map(weftName)).size).toBe(names.length);
  });

  it('never maps a name onto a hidden clone snapshot', () => {
    expect(isCloneSnapshot(weftName(cloneSnapshotName('target')))).toBe(false);
    expect(weftName('csi-clone.daily')).toBe('csi-clone.daily');
  });
});

describe('snapshot ids', () => {
  it('are VOLUME@SNAPSHOT, and parse back', () => {
    expect(snapshotId({ volume: 'vol', snapshot: 'snap' })).toBe('vol@snap');
    expect(parseSnapshotId('vol@snap')).toEqual({ volume: 'vol', snapshot: 'snap' });
  });

  it.each(['reallyfakesnapshotid', 'a@b@c', '@snap', 'vol@', 'v/x@snap'])('%s names no snapshot', (id) => {
    expect(parseSnapshotId(id)).toBeUndefined();
  });
});

describe('clone snapshots', () => {
  it('are hidden names derived from the target volume', () => {
    expect(cloneSnapshotName('clone-a')).toBe(cloneSnapshotName('clone-a'));
    expect(cloneSnapshotName('clone-a')).not.toBe(cloneSnapshotName('clone-b'));
    expect(isWeftName(cloneSnapshotName('clone-a'))).toBe(true);
    expect(isCloneSnapshot(cloneSnapshotName('clone-a'))).toBe(true);
    expect(isCloneSnapshot('daily')).toBe(false);
  });
});
