// GetCapacity's answer for volumes the cluster places (adapters/csi/cluster-capacity.ts), as a table:
// each copy on a node of its own, the primary within the topology.

import { clusterCapacity, type NodeRoom } from '../../adapters/csi/cluster-capacity';
import { MAX_VOLUME_BYTES } from '../../fabric/volume/types';

const GiB = 1024 ** 3;
const room = (nodeId: string, freeGiB: number, capacityGiB = 100): NodeRoom => ({ nodeId, freeBytes: freeGiB * GiB, capacityBytes: capacityGiB * GiB });
const anywhere = () => true;
const on = (id: string) => (r: NodeRoom) => r.nodeId === id;

test.each([
  ['one copy: the roomiest node', [room('a', 10), room('b', 10), room('c', 1)], 1, anywhere, 10, 100],
  ['three copies on nodes of 10, 10 and 1 GiB free: 1 GiB', [room('a', 10), room('b', 10), room('c', 1)], 3, anywhere, 1, 100],
  ['two copies: the second roomiest', [room('a', 10), room('b', 7), room('c', 1)], 2, anywhere, 7, 100],
  ['two copies, the primary on the fullest node: its room', [room('a', 10), room('b', 7), room('c', 1)], 2, on('c'), 1, 100],
  ['two copies, the primary on a node within the topology: the others may be anywhere', [room('a', 10), room('b', 7), room('c', 1)], 2, on('b'), 7, 100],
  ['more copies than nodes: nothing', [room('a', 10), room('b', 7)], 3, anywhere, 0, 0],
  ['no node within the topology: nothing', [room('a', 10), room('b', 7)], 1, on('z'), 0, 0],
  ['the largest volume: a pool at least that big on every node it takes', [room('a', 10, 500), room('b', 10, 200), room('c', 10, 50)], 2, anywhere, 10, 200],
  ['a full pool takes no copy, however large (the scheduler trusts the largest volume)', [room('a', 0, 500), room('b', 10, 100)], 1, anywhere, 10, 100],
  ['... nor does it count as the second copy\'s node', [room('a', 0, 500), room('b', 10, 100)], 2, anywhere, 0, 0],
  ['the largest volume is at most the largest a volume can be (16 TiB)', [room('a', 10, 64 * 1024)], 1, anywhere, 10, MAX_VOLUME_BYTES / GiB],
])('%s', (_name, rooms, replicas, mayBePrimary, availableGiB, maximumGiB) => {
  expect(clusterCapacity(rooms, replicas, mayBePrimary)).toEqual({ availableBytes: availableGiB * GiB, maximumVolumeBytes: maximumGiB * GiB });
});
