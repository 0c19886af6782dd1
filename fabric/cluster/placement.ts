// Placement: which nodes hold a new volume's replicas, and which of them is its primary. A plain
// function of the cluster's state and the request, so that every rule is tested with tables; the
// store, the network and the clock stay outside (DESIGN.md, "Pure decisions, I/O at the edges").

import { invalidArgument, resourceExhausted } from '../errors';

/** What placement needs to know of a node: from its registration in the cluster store. */
export interface NodeCandidate {
  id: string;
  /** Whether its lease is alive. A node that is down gets no new replica. */
  up: boolean;
  zone?: string;
  pools: PoolCandidate[];
}

export interface PoolCandidate {
  class: string;
  capacityBytes: number;
  usedBytes: number;
}

export interface PlacementRequest {
  sizeBytes: number;
  replicas: number;
  /** Service class; when absent, the cluster's default (see defaultClass). */
  class?: string;
  /** The node where the workload runs: it gets the primary. */
  locality?: string;
  /** A node to get the primary if it qualifies; else placement chooses (no refusal, unlike locality). */
  preferredNode?: string;
  /** The zones of the volume's copies that stay (a replacement's): spread over as the new ones are. */
  zonesTaken?: readonly (string | undefined)[];
}

export interface Placement {
  class: string;
  /** Distinct nodes, the primary first. */
  nodes: string[];
}

/** The class of a request that names none: "default" if a node has such a pool, else the only class there is. */
export function defaultClass(nodes: readonly NodeCandidate[]): string {
  const classes = new Set(nodes.flatMap((n) => n.pools.map((p) => p.class)));
  if (classes.has('default') || classes.size === 0) return 'default';
  if (classes.size === 1) return [...classes][0];
  throw invalidArgument(`the cluster has pools of several classes (${[...classes].sort().join(', ')}) and none named "default": name one`);
}

/**
 * Picks request.replicas distinct nodes that are up and have a pool of the class big enough for
 * the volume, and not full. Spreads them over zones where nodes are labelled (a zone gets a second
 * replica only once every zone has one), and prefers, within that, the node with the most free room.
 * With a locality, that node is the primary and must qualify itself; a preferred node is the primary
 * if it qualifies. Throws, choosing nothing, when the request cannot be met; the message says what
 * is missing.
 */
export function place(nodes: readonly NodeCandidate[], request: PlacementRequest): Placement {
  if (!Number.isInteger(request.replicas) || request.replicas < 1) throw invalidArgument(`replicas must be a whole number of at least 1, not ${request.replicas}`);
  const poolClass = request.class ?? defaultClass(nodes);
  // A class that no node has, up or down, is a mistake in the request (a typo), not a want of room,
  // which a CO would retry for ever. A cluster with no pool yet (its nodes still joining) lacks room.
  const classes = new Set(nodes.flatMap((n) => n.pools.map((p) => p.class)));
  if (classes.size > 0 && !classes.has(poolClass)) throw invalidArgument(`no node of the cluster has a pool of class "${poolClass}" (classes: ${[...classes].sort().join(', ')})`);
  // Thin: a volume may be larger than the room left, but not than the pool; a full pool takes none
  // (its first writes would fail with ENOSPC).
  const room = (node: NodeCandidate) => {
    const pool = node.pools.find((p) => p.class === poolClass);
    return pool && pool.capacityBytes >= request.sizeBytes && pool.usedBytes < pool.capacityBytes ? pool.capacityBytes - pool.usedBytes : undefined;
  };
  const eligible = nodes.filter((n) => n.up && room(n) !== undefined);
  const chosen: NodeCandidate[] = [];
  if (request.locality !== undefined) {
    const local = nodes.find((n) => n.id === request.locality);
    if (!local) throw invalidArgument(`locality: no node "${request.locality}" in the cluster (nodes: ${nodes.map((n) => n.id).join(', ') || 'none'})`);
    if (!eligible.includes(local)) throw resourceExhausted(`locality: node ${local.id} ${whyNot(local, poolClass, request.sizeBytes)}`);
    chosen.push(local);
  } else {
    const preferred = eligible.find((n) => n.id === request.preferredNode);
    if (preferred) chosen.push(preferred);
  }
  if (eligible.length < request.replicas) {
    const others = nodes.filter((n) => !eligible.includes(n)).map((n) => `${n.id} ${whyNot(n, poolClass, request.sizeBytes)}`);
    throw resourceExhausted(
      `${request.replicas} replicas need ${request.replicas} nodes that are up with a pool of class ${poolClass} of at least ` +
        `${request.sizeBytes} bytes; ${eligible.length} qualify${others.length > 0 ? ` (${others.join('; ')})` : ''}`,
    );
  }
  while (chosen.length < request.replicas) {
    const zonesUsed = new Map<string, number>();
    for (const zone of [...(request.zonesTaken ?? []), ...chosen.map((n) => n.zone)]) zonesUsed.set(zoneOf(zone), (zonesUsed.get(zoneOf(zone)) ?? 0) + 1);
    const rest = eligible.filter((n) => !chosen.includes(n));
    rest.sort((a, b) => (zonesUsed.get(zoneOf(a.zone)) ?? 0) - (zonesUsed.get(zoneOf(b.zone)) ?? 0) || room(b)! - room(a)! || a.id.localeCompare(b.id));
    chosen.push(rest[0]);
  }
  return { class: poolClass, nodes: chosen.map((n) => n.id) };
}

/** Nodes without a zone label count as one zone of their own kind. */
function zoneOf(zone: string | undefined): string {
  return zone === undefined ? '' : `zone:${zone}`;
}

function whyNot(node: NodeCandidate, poolClass: string, sizeBytes: number): string {
  if (!node.up) return 'is down';
  const pool = node.pools.find((p) => p.class === poolClass);
  if (!pool) return `has no pool of class ${poolClass}`;
  if (pool.capacityBytes < sizeBytes) return `has a pool of class ${poolClass} of ${pool.capacityBytes} bytes, smaller than the volume`;
  return `has a pool of class ${poolClass} that is full (${pool.usedBytes} of ${pool.capacityBytes} bytes used)`;
}
