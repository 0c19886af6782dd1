// The pure parts of the controller: capacity ranges to sizes, paging tokens, topology
// requirements and StorageClass parameters.

import { status } from '@grpc/grpc-js';
import { checkRange, DEFAULT_VOLUME_BYTES, fitsRange, MAX_VOLUME_BYTES, sizeInRange } from '../../adapters/csi/capacity';
import { CsiError } from '../../adapters/csi/errors';
import { page } from '../../adapters/csi/paging';
import { checkSnapshotParameters, parseParameters } from '../../adapters/csi/parameters';
import { checkRequirement, includes, nodeSegments, requestedNode, volumeTopology } from '../../adapters/csi/topology';

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof CsiError) return status[error.code];
    throw error;
  }
  return 'OK';
}

const range = (required_bytes: number, limit_bytes = 0) => ({ required_bytes, limit_bytes });

describe('capacity ranges', () => {
  it('default to 1 GiB, or the limit when that is lower', () => {
    expect(sizeInRange(range(0))).toBe(DEFAULT_VOLUME_BYTES);
    expect(sizeInRange(range(0, 10 * 4096 + 5))).toBe(10 * 4096);
  });

  it('round required_bytes up to whole 4 KiB blocks', () => {
    expect(sizeInRange(range(1))).toBe(4096);
    expect(sizeInRange(range(10_000_001))).toBe(Math.ceil(10_000_001 / 4096) * 4096);
    expect(sizeInRange(range(8192, 8192))).toBe(8192);
  });

  it('take at least a source size', () => {
    expect(sizeInRange(range(0), 64 * 4096)).toBe(64 * 4096);
    expect(sizeInRange(range(4096), 64 * 4096)).toBe(64 * 4096);
  });

  it('are OUT_OF_RANGE when the rounded size exceeds the limit or what a volume can be', () => {
    expect(codeOf(() => sizeInRange(range(5000, 6000)))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => sizeInRange(range(0, 100)))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => sizeInRange(range(0, 4096), 8192))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => sizeInRange(range(MAX_VOLUME_BYTES + 1)))).toBe('OUT_OF_RANGE');
  });

  it('are INVALID_ARGUMENT when negative or upside down', () => {
    expect(codeOf(() => checkRange('capacity_range', range(-1)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => checkRange('capacity_range', range(0, -1)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => checkRange('capacity_range', range(10, 5)))).toBe('INVALID_ARGUMENT');
    expect(checkRange('capacity_range', null)).toEqual(range(0, 0));
  });

  it('say whether an existing size fits', () => {
    expect(fitsRange(8192, range(0))).toBe(true);
    expect(fitsRange(8192, range(8000, 8192))).toBe(true);
    expect(fitsRange(8192, range(8193))).toBe(false);
    expect(fitsRange(8192, range(0, 4096))).toBe(false);
  });
});

describe('paging', () => {
  const ids = ['e', 'a', 'd', 'b', 'c'];
  const id = (x: string) => x;

  it('returns everything, sorted, without max_entries', () => {
    expect(page(ids, id, { max_entries: 0, starting_token: '' })).toEqual({ entries: ['a', 'b', 'c', 'd', 'e'], next_token: '' });
  });

  it('walks pages with next_token, without repeats or gaps', () => {
    const seen: string[] = [];
    let token = '';
    do {
      const result = page(ids, id, { max_entries: 2, starting_token: token });
      expect(result.entries.length).toBeLessThanOrEqual(2);
      seen.push(...result.entries);
      token = result.next_token;
    } while (token);
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('continues after the last entry of a page even when that entry is gone', () => {
    const first = page(ids, id, { max_entries: 2, starting_token: '' });
    const rest = page(['c', 'd', 'e'], id, { max_entries: 0, starting_token: first.next_token });
    expect(rest.entries).toEqual(['c', 'd', 'e']);
  });

  it('answers ABORTED to a token it did not give out, INVALID_ARGUMENT to negative max_entries', () => {
    expect(codeOf(() => page(ids, id, { max_entries: 0, starting_token: 'invalid-token' }))).toBe('ABORTED');
    expect(codeOf(() => page(ids, id, { max_entries: -1, starting_token: '' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('topology', () => {
  const place = { nodeId: 'n1', zone: 'z1' };
  const topo = (segments: Record<string, string>) => ({ segments });

  it('reports the node and its zone for the node and for a volume it alone holds, nothing (everywhere) for a volume of the cluster', () => {
    expect(nodeSegments(place)).toEqual({ 'topology.weft.io/node': 'n1', 'topology.weft.io/zone': 'z1' });
    expect(nodeSegments({ nodeId: 'n1' })).toEqual({ 'topology.weft.io/node': 'n1' });
    expect(volumeTopology(place, false)).toEqual([topo({ 'topology.weft.io/node': 'n1', 'topology.weft.io/zone': 'z1' })]);
    expect(volumeTopology({ nodeId: 'n1' }, false)).toEqual([topo({ 'topology.weft.io/node': 'n1' })]);
    expect(volumeTopology(place, true)).toEqual([]);
  });

  it('takes the node the preferred, then the requisite topologies name first; none when none names a node', () => {
    const requirement = (requisite: object[], preferred: object[] = []) => ({ requisite, preferred }) as never;
    const n2 = topo({ 'topology.weft.io/node': 'n2' });
    const n3 = topo({ 'topology.weft.io/node': 'n3', 'topology.weft.io/zone': 'z1' });
    const zone = topo({ 'topology.weft.io/zone': 'z1' });
    expect(requestedNode(requirement([n2], [n3]))).toBe('n3');
    expect(requestedNode(requirement([n2, n3], [zone]))).toBe('n2');
    expect(requestedNode(requirement([zone]))).toBeUndefined();
    expect(requestedNode(null)).toBeUndefined();
  });

  it('matches a topology when each of its segments is this node', () => {
    expect(includes(topo({ 'topology.weft.io/node': 'n1' }), place)).toBe(true);
    expect(includes(topo({ 'topology.weft.io/zone': 'z1' }), place)).toBe(true);
    expect(includes(topo({ 'topology.weft.io/zone': 'z2' }), place)).toBe(false);
    expect(includes(topo({ 'kubernetes.io/hostname': 'n1' }), place)).toBe(false);
  });

  it('refuses with RESOURCE_EXHAUSTED when no requisite topology includes this node', () => {
    const requirement = (requisite: object[], preferred: object[] = []) => ({ requisite, preferred }) as never;
    expect(codeOf(() => checkRequirement(null, place))).toBe('OK');
    expect(codeOf(() => checkRequirement(requirement([topo({ 'topology.weft.io/node': 'n2' }), topo({ 'topology.weft.io/node': 'n1' })]), place))).toBe('OK');
    expect(codeOf(() => checkRequirement(requirement([topo({ 'topology.weft.io/node': 'n2' })]), place))).toBe('RESOURCE_EXHAUSTED');
    expect(codeOf(() => checkRequirement(requirement([], [topo({ 'topology.weft.io/node': 'n2' })]), place))).toBe('OK');
  });
});

describe('parameters', () => {
  it('reads class, replicas and locality, and ignores the keys Kubernetes adds', () => {
    expect(parseParameters({})).toEqual({ class: undefined, replicas: 1, locality: false });
    expect(parseParameters({ replicas: '3' }).replicas).toBe(3);
    expect(parseParameters({ replicas: '999' }).replicas).toBe(999);
    expect(parseParameters({ class: 'ssd', replicas: '1', locality: 'true', 'csi.storage.k8s.io/pvc/name': 'data' })).toEqual({
      class: 'ssd',
      replicas: 1,
      locality: true,
    });
  });

  it.each([
    [{ size: '1G' }, /parameter "size" is not supported/],
    [{ class: 'a/b' }, /class "a\/b"/],
    [{ replicas: '0' }, /replicas "0"/],
    [{ replicas: 'two' }, /replicas "two"/],
    [{ replicas: '1.5' }, /replicas "1.5"/],
    [{ replicas: '99999999999999999999' }, /replicas "99999999999999999999"/],
    // The API's field is 32 bits: this one arrived as 1, and a volume of one copy was made.
    [{ replicas: '4294967297' }, /replicas "4294967297" must be a whole number of copies, from 1 to 999/],
    [{ replicas: '1000' }, /replicas "1000"/],
    [{ locality: 'yes' }, /locality "yes"/],
  ])('refuses %j', (parameters, message) => {
    expect(() => parseParameters(parameters)).toThrow(message);
    expect(codeOf(() => parseParameters(parameters))).toBe('INVALID_ARGUMENT');
  });

  it('takes no snapshot parameters but those Kubernetes adds', () => {
    expect(codeOf(() => checkSnapshotParameters({ 'csi.storage.k8s.io/volumesnapshot/name': 's' }))).toBe('OK');
    expect(codeOf(() => checkSnapshotParameters({ retention: '7d' }))).toBe('INVALID_ARGUMENT');
  });
});
