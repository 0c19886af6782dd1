// GetCapacity for volumes the cluster places: each copy on a node of its own, the primary on a node
// within the topology asked about (the others anywhere: attach is local on every node).

import { MAX_VOLUME_BYTES } from '../../fabric/volume/types';

/** One node's pool of the class asked about. */
export interface NodeRoom {
  nodeId: string;
  zone?: string;
  freeBytes: number;
  capacityBytes: number;
}

export interface ClusterCapacity {
  /** The most a new volume of this many copies can be filled with: the least room among its nodes. */
  availableBytes: number;
  /** The largest such volume placement accepts (a pool of at least its size on each node). */
  maximumVolumeBytes: number;
}

/**
 * The best placement's answer: for each node that may hold the primary, it and the replicas - 1
 * roomiest other nodes; zero when there are not enough nodes.
 */
export function clusterCapacity(rooms: readonly NodeRoom[], replicas: number, mayBePrimary: (room: NodeRoom) => boolean): ClusterCapacity {
  // The (replicas - 1)th largest of the other nodes' values: what the least of the other copies gets.
  const nth = (values: number[]) => (replicas === 1 ? Number.POSITIVE_INFINITY : values.sort((a, b) => b - a)[replicas - 2]);
  // A full pool takes no copy (placement's rule: its first writes would fail), whatever its size.
  const usable = rooms.filter((r) => r.freeBytes > 0);
  let best: ClusterCapacity = { availableBytes: 0, maximumVolumeBytes: 0 };
  for (const primary of usable.filter(mayBePrimary)) {
    const others = usable.filter((r) => r !== primary);
    if (others.length < replicas - 1) continue;
    const availableBytes = Math.min(primary.freeBytes, nth(others.map((r) => r.freeBytes)));
    const maximumVolumeBytes = Math.min(primary.capacityBytes, nth(others.map((r) => r.capacityBytes)), MAX_VOLUME_BYTES);
    best = { availableBytes: Math.max(best.availableBytes, availableBytes), maximumVolumeBytes: Math.max(best.maximumVolumeBytes, maximumVolumeBytes) };
  }
  return best;
}
