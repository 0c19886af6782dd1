// Placement (fabric/cluster/placement.ts) as a table: which nodes get a new volume's replicas, and
// the clear refusal, choosing nothing, when a request cannot be met.

import { place, type NodeCandidate, type PlacementRequest } from '../../fabric/cluster/placement';
import { WeftError } from '../../fabric/errors';

const GiB = 1024 ** 3;

/** A node that is up with one pool; `used` and `capacity` in GiB. */
function node(id: string, options: { zone?: string; up?: boolean; class?: string; capacity?: number; used?: number } = {}): NodeCandidate {
  const pool = { class: options.class ?? 'default', capacityBytes: (options.capacity ?? 100) * GiB, usedBytes: (options.used ?? 0) * GiB };
  return { id, up: options.up ?? true, zone: options.zone, pools: [pool] };
}

const request = (replicas: number, more: Partial<PlacementRequest> = {}): PlacementRequest => ({ sizeBytes: 10 * GiB, replicas, ...more });

describe('placement picks', () => {
  test.each<[string, NodeCandidate[], PlacementRequest, string[]]>([
    ['one replica: the node with the most free room', [node('a', { used: 50 }), node('b', { used: 10 }), node('c', { used: 30 })], request(1), ['b']],
    ['distinct nodes, most free room first', [node('a', { used: 50 }), node('b', { used: 10 }), node('c', { used: 30 })], request(3), ['b', 'c', 'a']],
    ['ties broken by node id, so the answer is stable', [node('c'), node('a'), node('b')], request(2), ['a', 'b']],
    [
      'one replica per zone before a second in any zone',
      [node('a1', { zone: 'a' }), node('a2', { zone: 'a' }), node('b1', { zone: 'b', used: 90 }), node('c1', { zone: 'c', used: 80 })],
      request(3),
      ['a1', 'c1', 'b1'],
    ],
    ['more replicas than zones: the zones are shared evenly', [node('a1', { zone: 'a' }), node('a2', { zone: 'a' }), node('b1', { zone: 'b' })], request(3), ['a1', 'b1', 'a2']],
    ['locality: that node is the primary, even with less room', [node('a'), node('b', { used: 60 }), node('c')], request(2, { locality: 'b' }), ['b', 'a']],
    ['locality and zones: the others avoid the primary zone', [node('a1', { zone: 'a' }), node('a2', { zone: 'a' }), node('b1', { zone: 'b', used: 90 })], request(2, { locality: 'a1' }), ['a1', 'b1']],
    ['nodes that are down, or without the class, or too small, or full are passed over', [node('a', { up: false }), node('b', { class: 'hdd' }), node('c', { capacity: 5 }), node('e', { used: 100 }), node('d', { used: 99 })], request(1), ['d']],
    ['a named class', [node('a', { class: 'hdd' }), node('b', { class: 'ssd' })], request(1, { class: 'ssd' }), ['b']],
    ['a preferred node that qualifies is the primary, even with less room', [node('a'), node('b', { used: 60 }), node('c')], request(2, { preferredNode: 'b' }), ['b', 'a']],
    ['a preferred node that does not qualify (down) is passed over, not a refusal', [node('a', { up: false }), node('b', { used: 100 }), node('c')], request(1, { preferredNode: 'a' }), ['c']],
    ['an unknown preferred node: placement chooses', [node('a'), node('b', { used: 10 })], request(1, { preferredNode: 'zz' }), ['a']],
    ['no class named, one class in the cluster: that one', [node('a', { class: 'ssd' })], request(1), ['a']],
  ])('%s', (_name, nodes, req, expected) => {
    expect(place(nodes, req).nodes).toEqual(expected);
  });

  test('the answer names the class used', () => {
    expect(place([node('a', { class: 'ssd' })], request(1)).class).toBe('ssd');
    expect(place([node('a'), { ...node('b'), pools: [{ class: 'ssd', capacityBytes: GiB, usedBytes: 0 }] }], request(1)).class).toBe('default');
  });
});

describe('placement refuses', () => {
  test.each<[string, NodeCandidate[], PlacementRequest, string, RegExp]>([
    ['more replicas than qualifying nodes', [node('a'), node('b', { up: false })], request(2), 'RESOURCE_EXHAUSTED', /2 replicas need 2 nodes .* class default .*; 1 qualify \(b is down\)/],
    ['no node with the class, up or down (a typo): not a want of room', [node('a', { class: 'hdd' }), node('b', { class: 'nvme', up: false })], request(1, { class: 'ssd' }), 'INVALID_ARGUMENT', /no node of the cluster has a pool of class "ssd" \(classes: hdd, nvme\)/],
    ['the only nodes with the class are down: a want of room', [node('a', { class: 'hdd' }), node('b', { class: 'ssd', up: false })], request(1, { class: 'ssd' }), 'RESOURCE_EXHAUSTED', /0 qualify \(a has no pool of class ssd; b is down\)/],
    ['no node has joined yet', [], request(1), 'RESOURCE_EXHAUSTED', /0 qualify/],
    ['a volume bigger than every pool', [node('a', { capacity: 5 })], request(1), 'RESOURCE_EXHAUSTED', /a has a pool of class default of 5368709120 bytes, smaller than the volume/],
    ['a full pool (thin volumes may be larger than the room left, not than nothing)', [node('a', { used: 100 })], request(1), 'RESOURCE_EXHAUSTED', /a has a pool of class default that is full \(107374182400 of 107374182400 bytes used\)/],
    ['an unknown locality node', [node('a')], request(1, { locality: 'zz' }), 'INVALID_ARGUMENT', /locality: no node "zz" in the cluster \(nodes: a\)/],
    ['a locality node that is down', [node('a', { up: false }), node('b')], request(1, { locality: 'a' }), 'RESOURCE_EXHAUSTED', /locality: node a is down/],
    ['several classes, none named default, and no class asked', [node('a', { class: 'hdd' }), node('b', { class: 'ssd' })], request(1), 'INVALID_ARGUMENT', /several classes \(hdd, ssd\)/],
    ['zero replicas', [node('a')], request(0), 'INVALID_ARGUMENT', /replicas must be a whole number of at least 1, not 0/],
  ])('%s', (_name, nodes, req, kind, message) => {
    let error: unknown;
    try {
      place(nodes, req);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(WeftError);
    expect((error as WeftError).kind).toBe(kind);
    expect((error as WeftError).message).toMatch(message);
  });
});
