// Topology: a node reports its id (topology.weft.io/node) and, when weftd has one, its zone
// (topology.weft.io/zone). A volume of the cluster is attached through any node, so it reports no
// topology (the spec's "accessible from all nodes"); a volume made on the controller's own node is
// reachable from that node only, and requirements are checked against that node's segments.

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

/**
 * Where a volume can be attached, as CreateVolume reports it. Every node serves a volume of the
 * cluster (forwarding to its primary), so such a volume reports none: the CSI spec lets a CO then
 * use it from any node. Listing the zones would say no more where every node is labelled, and
 * would wrongly shut out a node that is not. A volume that only this node holds is reachable here:
 * the node's segments as NodeGetInfo reports them, all of them (zone too), since Nomad before 1.8
 * matches a volume's topology to a node's only when they are equal.
 */
export function volumeTopology(place: Place, ofCluster: boolean): Topology[] {
  return ofCluster ? [] : [{ segments: nodeSegments(place) }];
}

/**
 * The node a volume of the cluster gets its primary on: the first node that the preferred, then
 * the requisite topologies name (Kubernetes puts the node it scheduled the pod on first with
 * WaitForFirstConsumer). Undefined when none names a node: placement then chooses.
 */
export function requestedNode(requirement: TopologyRequirement | null): string | undefined {
  const named = [...(requirement?.preferred ?? []), ...(requirement?.requisite ?? [])];
  return named.find((topology) => topology.segments[NODE_KEY])?.segments[NODE_KEY];
}

/** Whether every segment of the topology matches this node (an unknown key never matches). */
export function includes(topology: Topology, place: Place): boolean {
  const here = nodeSegments(place);
  return Object.entries(topology.segments).every(([key, value]) => here[key] === value);
}

/**
 * A volume made on this node meets a requirement when a requisite topology includes the node.
 * Preferred topologies are a wish, never a reason to fail (the spec lets the SP choose freely when
 * no requisite is given). RESOURCE_EXHAUSTED as the spec says, so that the CO tries elsewhere.
 */
export function checkRequirement(requirement: TopologyRequirement | null, place: Place, why = "this controller's node"): void {
  const requisite = requirement?.requisite ?? [];
  if (requisite.length === 0 || requisite.some((topology) => includes(topology, place))) return;
  const wanted = requisite.map((topology) => JSON.stringify(topology.segments)).join(', ');
  throw resourceExhausted(`a single-copy volume is made on ${why} ${place.nodeId} (${JSON.stringify(nodeSegments(place))}), which no requisite topology includes: ${wanted}`);
}

/**
 * With locality, the first replica goes where the workload runs: the CO's first preferred topology
 * (Kubernetes puts the node it scheduled the pod on there). A volume made on this node cannot go
 * elsewhere, so another node is refused rather than silently ignored: RESOURCE_EXHAUSTED, as the
 * spec says for a topology the plugin cannot provision in, so that the CO schedules the workload again.
 */
export function checkLocality(requirement: TopologyRequirement | null, place: Place, why = `this controller makes single-copy volumes on its own node ${place.nodeId} (give its weftd --pool none to place them across the cluster)`): void {
  const workloadAt = requirement?.preferred?.[0];
  if (!workloadAt || includes(workloadAt, place)) return;
  throw resourceExhausted(`parameter locality "true" asks for the first replica where the workload runs, ${JSON.stringify(workloadAt.segments)}; ${why}`);
}
