// Topology: a volume is reachable from the node that holds it (topology.weft.io/node); a node also
// reports its zone (topology.weft.io/zone) when weftd has one. Requirements are checked against
// this node's segments, and so is locality.

import { resourceExhausted } from './errors';
import type { StringMap, Topology, TopologyRequirement } from './messages';

export const NODE_KEY = 'topology.weft.io/node';
export const ZONE_KEY = 'topology.weft.io/zone';

/** Where a node is: its id and, when labelled, its zone. */
export interface Place {
  nodeId: string;
  zone?: string;
}

/** A node's segments, as NodeGetInfo reports them. */
export function nodeSegments(place: Place): StringMap {
  return place.zone ? { [NODE_KEY]: place.nodeId, [ZONE_KEY]: place.zone } : { [NODE_KEY]: place.nodeId };
}

/** Where a volume on this node is reachable from, as CreateVolume reports it. */
export function volumeTopology(place: Place): Topology[] {
  return [{ segments: { [NODE_KEY]: place.nodeId } }];
}

/** Whether every segment of the topology matches this node (an unknown key never matches). */
export function includes(topology: Topology, place: Place): boolean {
  const here = nodeSegments(place);
  return Object.entries(topology.segments).every(([key, value]) => here[key] === value);
}

/**
 * Volumes are made on this node, so a requirement is met when a requisite topology includes it.
 * Preferred topologies are a wish, never a reason to fail (the spec lets the SP choose freely when
 * no requisite is given). RESOURCE_EXHAUSTED as the spec says, so that the CO tries elsewhere.
 */
export function checkRequirement(requirement: TopologyRequirement | null, place: Place): void {
  const requisite = requirement?.requisite ?? [];
  if (requisite.length === 0 || requisite.some((topology) => includes(topology, place))) return;
  const wanted = requisite.map((topology) => JSON.stringify(topology.segments)).join(', ');
  throw resourceExhausted(`volumes are made on node ${place.nodeId} (${JSON.stringify(nodeSegments(place))}), which no requisite topology includes: ${wanted}`);
}

/**
 * With locality, the first replica goes where the workload runs: the CO's first preferred topology
 * (Kubernetes puts the node it scheduled the pod on there). Volumes are made on this node only, so
 * another node is refused rather than silently ignored: RESOURCE_EXHAUSTED, as the spec says for a
 * topology the plugin cannot provision in, so that the CO schedules the workload again.
 */
export function checkLocality(requirement: TopologyRequirement | null, place: Place): void {
  const workloadAt = requirement?.preferred?.[0];
  if (!workloadAt || includes(workloadAt, place)) return;
  throw resourceExhausted(
    `parameter locality "true" asks for the first replica where the workload runs, ${JSON.stringify(workloadAt.segments)}; ` +
      `volumes are made only on node ${place.nodeId} until the cluster lands`,
  );
}
