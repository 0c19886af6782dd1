// CSI Controller service: volumes, snapshots, capacity and expansion, each RPC validating its
// request first, then making a few calls to weftd's control API. No storage logic lives here.

import type { Logger } from 'pino';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { WeftApiError, WeftClient } from '../../fabric/api/client';
import { hostPort } from '../../fabric/listen';
import type { SnapshotInfo, VolumeInfo } from '../../fabric/volume/types';
import { checkRange, fitsRange, sizeInRange } from './capacity';
import { clusterCapacity } from './cluster-capacity';
import { alreadyExists, invalidArgument, notFound, unavailable, unlessNotFound, unlessWeftd } from './errors';
import type * as csi from './messages';
import { contentSource, csiSnapshot, csiVolume, sourceKey, volumeCondition } from './objects';
import { page } from './paging';
import { checkSnapshotParameters, parseParameters, type VolumeParameters } from './parameters';
import { cloneSnapshotName, isCloneSnapshot, isWeftName, parseSnapshotId, volumeRef, weftName, type SnapshotRef } from './names';
import { serviceImplementation } from './rpc';
import { checkLocality, checkRequirement, includes, requestedNode, type Place } from './topology';
import { firstUnsupported, requireCapabilities, requireCapability, requireName, requireString, unsupportedReason } from './validate';
import { claimContext } from './workload';
import { defaultClass } from '../../fabric/volume/default-class';
import { KeyedTurns } from '../../fabric/keyed-turns';

const CAPABILITIES = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  'GET_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER', // the single-node modes SINGLE_NODE_SINGLE_WRITER and SINGLE_NODE_MULTI_WRITER are taken
].map((type) => ({ rpc: { type } }));

/** The controller's own node, and whether its weftd holds volumes (it has pools) or only places them. */
interface Home extends Place {
  hasPools: boolean;
}

/** Where a new volume's data comes from, as the request names it. */
type Source = { kind: 'snapshot'; ref: SnapshotRef } | { kind: 'volume'; volume: string };

/** A call to another node's weftd (a volume it holds alone): bounded, as the node may be gone. */
const NODE_CALL_DEADLINE_MS = 10_000;

export class ControllerServer {
  /** One operation at a time per volume or snapshot name; a second call waits for the first (node-server.ts says why). */
  private readonly inFlight = new KeyedTurns();
  private homeOnce?: Promise<Home>;

  constructor(private readonly client: WeftClient, private readonly logger: Logger) {}

  implementation(): UntypedServiceImplementation {
    return serviceImplementation(
      {
        CreateVolume: (request: csi.CreateVolumeRequest) => this.createVolume(request),
        DeleteVolume: (request: csi.VolumeIdRequest) => this.deleteVolume(request),
        ValidateVolumeCapabilities: (request: csi.ValidateVolumeCapabilitiesRequest) => this.validateVolumeCapabilities(request),
        ListVolumes: (request: csi.PageRequest) => this.listVolumes(request),
        GetCapacity: (request: csi.GetCapacityRequest) => this.getCapacity(request),
        ControllerGetCapabilities: () => ({ capabilities: CAPABILITIES }),
        CreateSnapshot: (request: csi.CreateSnapshotRequest) => this.createSnapshot(request),
        DeleteSnapshot: (request: csi.DeleteSnapshotRequest) => this.deleteSnapshot(request),
        ListSnapshots: (request: csi.ListSnapshotsRequest) => this.listSnapshots(request),
        ControllerExpandVolume: (request: csi.ControllerExpandVolumeRequest) => this.expandVolume(request),
        ControllerGetVolume: (request: csi.VolumeIdRequest) => this.getVolume(request),
      },
      this.logger,
    );
  }

  // ---- volumes

  private async createVolume(request: csi.CreateVolumeRequest): Promise<object> {
    const name = requireName('name', request.name);
    const unsupported = firstUnsupported(requireCapabilities('volume_capabilities', request.volume_capabilities));
    if (unsupported) throw invalidArgument(`volume_capabilities: ${unsupported}`);
    const parameters = parseParameters(request.parameters);
    const range = checkRange('capacity_range', request.capacity_range);
    const source = requestedSource(request.volume_content_source);
    const home = await this.home();
    const volume = weftName(name);
    return this.inFlight.run(`volume ${volume}`, async () => {
      const at = await this.madeThrough(source, home);
      try {
        const locality = at.place === home ? this.locality(request.accessibility_requirements, parameters, home) : fromNodeAlone(request.accessibility_requirements, parameters, at.place, source!);
        const existing = await unlessNotFound(at.client.getVolume(volume));
        const info = existing ? await this.reuse(at.client, existing, name, range, parameters, source) : await this.provision(at.client, volume, range, parameters, source, locality);
        // The claim (Kubernetes' --extra-create-metadata) reaches the node service through the context.
        return { volume: csiVolume(info, at.place, claimContext(request.parameters)) };
      } finally {
        at.close();
      }
    });
  }

  /**
   * The weftd a new volume is made through: this node's, unless it is made from a volume (a restore
   * of its snapshot, or a clone) that another node holds alone, which that node clones from its own
   * copy. A source found nowhere (a snapshot kept after its volume was deleted) is this node's to find.
   */
  private async madeThrough(source: Source | undefined, home: Home): Promise<{ client: WeftClient; place: Place; close(): void }> {
    const here = { client: this.client, place: home, close: () => undefined };
    if (!source || (await this.hasHere(source))) return here;
    const found = await this.locate(source.kind === 'snapshot' ? source.ref.volume : source.volume);
    return found && found.client !== this.client ? found : here;
  }

  /** Whether this node's weftd knows the source (the cluster's volumes and snapshots, kept ones too): no other node need be asked. */
  private async hasHere(source: Source): Promise<boolean> {
    if (source.kind === 'volume') return (await unlessNotFound(this.client.getVolume(source.volume))) !== undefined;
    const snapshots = await unlessNotFound(this.client.listSnapshots(source.ref.volume));
    return snapshots?.some((s) => s.name === source.ref.snapshot) ?? false;
  }

  /**
   * The node to hold a new volume's primary, if one is to be asked for. A controller whose weftd has
   * no pool (--pool none), or a volume of several copies, goes through the cluster's placement, and
   * the primary goes on the node the topology names first (requestedNode), whether or not the
   * parameters ask for locality: the CO names first where it wants the volume (Kubernetes, with
   * WaitForFirstConsumer: the pod's node), and the spec asks the SP to follow the preferred order.
   * When that node cannot take the volume, placement chooses another (preferredNode); with the
   * locality parameter, weftd's RESOURCE_EXHAUSTED reaches the CO, which schedules again. With no
   * node named (a Nomad volume without topology_request), placement chooses.
   * Otherwise the volume is made here, so the requirements must include this node.
   */
  private locality(requirement: csi.TopologyRequirement | null, parameters: VolumeParameters, home: Home): string | undefined {
    if (home.hasPools && parameters.replicas === 1) {
      checkRequirement(requirement, home);
      if (parameters.locality) checkLocality(requirement, home);
      return undefined;
    }
    return requestedNode(requirement);
  }

  /** An existing volume answers a repeated CreateVolume if it matches; else ALREADY_EXISTS. */
  private async reuse(client: WeftClient, existing: VolumeInfo, name: string, range: csi.CapacityRange, parameters: VolumeParameters, source: Source | undefined): Promise<VolumeInfo> {
    const why = incompatibility(existing, range, parameters, source);
    if (why) throw alreadyExists(`volume ${existing.name} (for name "${name}") already exists, but ${why}`);
    if (source?.kind === 'volume') await dropCloneSnapshot(client, source.volume, cloneSnapshotName(existing.name), this.logger);
    return existing;
  }

  private async provision(client: WeftClient, volume: string, range: csi.CapacityRange, parameters: VolumeParameters, source: Source | undefined, locality: string | undefined): Promise<VolumeInfo> {
    let info: VolumeInfo;
    if (source?.kind === 'snapshot') info = await restoreSnapshot(client, volume, range, parameters, source.ref, locality);
    else if (source?.kind === 'volume') info = await cloneVolume(client, volume, range, parameters, source.volume, locality, this.logger);
    else {
      // The node named first is a must with the locality parameter; else a wish placement follows if
      // it can: a volume of the cluster is attached through any node, and with Immediate binding the
      // CO names the same node first at every retry, so a refusal would leave the claim pending.
      const primary = parameters.locality ? { locality } : { preferredNode: locality };
      info = await this.client.createVolume({ name: volume, sizeBytes: sizeInRange(range), class: parameters.class, replicas: parameters.replicas, ...primary });
    }
    const replicas = info.replication?.replicas.map((r) => r.node);
    this.logger.info({ volume, sizeBytes: info.sizeBytes, class: info.class, source: info.sourceSnapshot, replicas }, 'CSI volume created');
    return info;
  }

  private async deleteVolume(request: csi.VolumeIdRequest): Promise<object> {
    const volume = requireString('volume_id', request.volume_id);
    if (!isWeftName(volume)) return {};
    return this.inFlight.run(`volume ${volume}`, async () => {
      const found = await this.locate(volume);
      if (!found) return {};
      const { client } = found;
      try {
        // A volume of the cluster that this node holds no copy of has no snapshots here.
        const snapshots = (await unlessNotFound(client.listSnapshots(volume))) ?? [];
        for (const hidden of snapshots.filter((s) => isCloneSnapshot(s.name))) await unlessNotFound(client.deleteSnapshot(volume, hidden.name));
        await unlessNotFound(client.deleteVolume(volume));
      } finally {
        found.close();
      }
      this.logger.info({ volume, node: found.place.nodeId }, 'CSI volume deleted');
      return {};
    });
  }

  /**
   * The volume, and the weftd that holds it: this node's for a volume of the cluster or one of its own;
   * else the node, among those up, that holds it alone (a volume made on a node without replicas,
   * `weft volume create` on it, then registered with Nomad, whose controller is another weftd).
   * Undefined if no node has it; UNAVAILABLE if a node that is up did not answer, if one that is
   * down registered it as its own, or if the nodes cannot be listed (the store out of reach): a
   * DeleteVolume answered OK then would leave the volume there for good.
   */
  private async locate(volume: string): Promise<{ client: WeftClient; info: VolumeInfo; place: Place; close(): void } | undefined> {
    const home = await this.home();
    const here = await unlessNotFound(this.client.getVolume(volume));
    if (here) return { client: this.client, info: here, place: home, close: () => undefined };
    const nodes = await this.client.listNodes().catch((err: Error) => {
      throw unavailable(`volume ${volume} is not on this node, and the cluster's nodes cannot be listed: ${err.message}`);
    });
    // A node that is down is asked nothing (every DeleteVolume of a volume gone would wait for it):
    // its registration names the volumes it holds alone.
    const down = nodes.filter((n) => n.state !== 'up' && n.ownVolumes?.includes(volume)).map((n) => n.id);
    if (down.length > 0) throw unavailable(`volume ${volume} is held by node ${down.join(', ')}, which is down: try again once it is up`);
    const others = nodes.filter((n) => n.id !== home.nodeId && n.state === 'up');
    const silent: string[] = [];
    for (const node of others) {
      const client = new WeftClient(hostPort(node.address, node.apiPort), NODE_CALL_DEADLINE_MS);
      try {
        const info = await unlessNotFound(client.getVolume(volume));
        if (info) return { client, info, place: { nodeId: node.id, zone: node.zone }, close: () => client.close() };
      } catch (error) {
        silent.push(`${node.id} (${(error as Error).message})`);
      }
      client.close();
    }
    if (silent.length > 0) throw unavailable(`volume ${volume} is not on this node, nor on the nodes that answered; these did not: ${silent.join(', ')}`);
    return undefined;
  }

  /** As locate(), NOT_FOUND if no node has it. */
  private async located(volume: string): Promise<{ client: WeftClient; info: VolumeInfo; place: Place; close(): void }> {
    const found = await this.locate(volume);
    if (!found) throw notFound(`volume ${volume} does not exist`);
    return found;
  }

  private async validateVolumeCapabilities(request: csi.ValidateVolumeCapabilitiesRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    const capabilities = requireCapabilities('volume_capabilities', request.volume_capabilities);
    const parameters = parseParameters(request.parameters);
    const found = await this.located(volume);
    found.close();
    const info = found.info;
    const why = firstUnsupported(capabilities) ?? contextMismatch(info, request.volume_context, parameters);
    if (why) return { message: why };
    return { confirmed: { volume_context: request.volume_context, volume_capabilities: capabilities, parameters: request.parameters } };
  }

  private async listVolumes(request: csi.PageRequest): Promise<object> {
    const home = await this.home();
    const { entries, next_token } = page(await this.client.listVolumes(), (v) => v.name, request);
    return { entries: entries.map((info) => ({ volume: csiVolume(info, home), status: volumeStatus(info) })), next_token };
  }

  private async getVolume(request: csi.VolumeIdRequest): Promise<object> {
    const found = await this.located(volumeRef(requireString('volume_id', request.volume_id)));
    found.close();
    return { volume: csiVolume(found.info, found.place), status: volumeStatus(found.info) };
  }

  /**
   * Room for a CreateVolume with these parameters within the topology given: this node's pool when
   * the volume would be made here (one copy, on a controller with pools), else what the cluster's
   * placement could give it (each copy on a node of its own, among the nodes that are up); 0 where
   * no volume could be made.
   */
  private async getCapacity(request: csi.GetCapacityRequest): Promise<object> {
    const capabilities = request.volume_capabilities.map((c, i) => requireCapability(`volume_capabilities[${i}]`, c));
    const parameters = parseParameters(request.parameters);
    const home = await this.home();
    const within = (place: Place) => request.accessible_topology === null || includes(request.accessible_topology, place);
    const here = home.hasPools && parameters.replicas === 1;
    const nodes = here ? [{ id: home.nodeId, zone: home.zone, pools: await this.client.listPools() }] : (await this.client.listNodes()).filter((n) => n.state === 'up');
    const chosen = parameters.class ?? defaultClass(nodes.flatMap((n) => n.pools.map((p) => p.class)));
    const rooms = nodes.flatMap((n) => {
      const pool = n.pools.find((p) => p.class === chosen);
      return pool ? [{ nodeId: n.id, zone: n.zone, freeBytes: Math.max(0, pool.capacityBytes - pool.usedBytes), capacityBytes: pool.capacityBytes }] : [];
    });
    const room = clusterCapacity(rooms, parameters.replicas, within);
    if (room.maximumVolumeBytes === 0 || firstUnsupported(capabilities)) return { available_capacity: 0 };
    return { available_capacity: room.availableBytes, maximum_volume_size: { value: room.maximumVolumeBytes } };
  }

  private async expandVolume(request: csi.ControllerExpandVolumeRequest): Promise<object> {
    const volume = volumeRef(requireString('volume_id', request.volume_id));
    if (!request.capacity_range) throw invalidArgument('capacity_range is required');
    const range = checkRange('capacity_range', request.capacity_range);
    const capability = request.volume_capability ? requireCapability('volume_capability', request.volume_capability) : undefined;
    const unsupported = capability && unsupportedReason(capability);
    if (unsupported) throw invalidArgument(`volume_capability: ${unsupported}`);
    return this.inFlight.run(`volume ${volume}`, async () => {
      const found = await this.located(volume);
      const current = found.info;
      const sizeBytes = sizeInRange(range, current.sizeBytes);
      let info = current;
      try {
        if (sizeBytes > current.sizeBytes) info = await found.client.resizeVolume(volume, sizeBytes);
      } finally {
        found.close();
      }
      if (info !== current) this.logger.info({ volume, sizeBytes }, 'CSI volume expanded');
      // Always: an attached device (block or under a filesystem) learns the new size only on the node.
      return { capacity_bytes: info.sizeBytes, node_expansion_required: true };
    });
  }

  // ---- snapshots

  /** Snapshot names are unique across volumes, as CSI's are: the same name on another volume is ALREADY_EXISTS. */
  private async createSnapshot(request: csi.CreateSnapshotRequest): Promise<object> {
    const volume = volumeRef(requireString('source_volume_id', request.source_volume_id));
    const name = weftName(requireName('name', request.name));
    checkSnapshotParameters(request.parameters);
    return this.inFlight.run(`snapshot ${name}`, async () => {
      const existing = (await this.client.listSnapshots()).find((s) => s.name === name);
      if (existing && existing.volume !== volume) {
        throw alreadyExists(`snapshot name "${request.name}" is taken by a snapshot of volume ${existing.volume}`);
      }
      if (existing) return { snapshot: csiSnapshot(existing) };
      // Where the volume is: the weftd of a volume another node holds alone, too (locate).
      const found = await this.located(volume);
      try {
        const info = await found.client.createSnapshot(volume, name).catch(async (err: unknown) => {
          // A retry whose snapshot the listing above missed (its volume's primary did not answer it,
          // or another node holds the volume alone): the volume's own list says whether it is this request's.
          if (!(err instanceof WeftApiError && err.code === status.ALREADY_EXISTS)) throw err;
          const made = (await found.client.listSnapshots(volume)).find((s) => s.name === name);
          if (!made) throw err;
          return made;
        });
        this.logger.info({ volume, snapshot: name, node: found.place.nodeId }, 'CSI snapshot created');
        return { snapshot: csiSnapshot(info) };
      } finally {
        found.close();
      }
    });
  }

  /**
   * On the weftd that holds the volume (locate): asked of this one only, the snapshot of a volume
   * another node holds alone was answered OK and left there. A volume gone leaves its snapshots to
   * the cluster (kept snapshots), which this weftd deletes.
   */
  private async deleteSnapshot(request: csi.DeleteSnapshotRequest): Promise<object> {
    const ref = parseSnapshotId(requireString('snapshot_id', request.snapshot_id));
    if (!ref) return {};
    return this.inFlight.run(`snapshot ${ref.snapshot}`, async () => {
      const found = await this.locate(ref.volume);
      try {
        await unlessNotFound((found?.client ?? this.client).deleteSnapshot(ref.volume, ref.snapshot));
      } finally {
        found?.close();
      }
      return {};
    });
  }

  /** Hidden clone snapshots are Weft's business, never listed. Unknown filters match nothing. */
  private async listSnapshots(request: csi.ListSnapshotsRequest): Promise<object> {
    const byId = request.snapshot_id ? parseSnapshotId(request.snapshot_id) : undefined;
    const volume = byId?.volume ?? request.source_volume_id;
    const unmatchable = (request.snapshot_id && !byId) || (volume && !isWeftName(volume)) || (byId && request.source_volume_id && request.source_volume_id !== byId.volume);
    const listed = unmatchable ? [] : ((await this.snapshotsOf(volume || undefined)) ?? []);
    const visible = listed.filter((s) => !isCloneSnapshot(s.name) && (!byId || s.name === byId.snapshot)).map(csiSnapshot);
    const { entries, next_token } = page(visible, (s) => s.snapshot_id, request);
    return { entries: entries.map((snapshot) => ({ snapshot })), next_token };
  }

  /** The snapshots of volume, asked of the weftd that holds it (locate); every one this weftd lists without a volume. */
  private async snapshotsOf(volume: string | undefined): Promise<SnapshotInfo[] | undefined> {
    const found = volume === undefined ? undefined : await this.locate(volume);
    try {
      return await unlessNotFound((found?.client ?? this.client).listSnapshots(volume));
    } finally {
      found?.close();
    }
  }

  /** This node's place and whether it has pools, asked of weftd once (neither changes while weftd runs). */
  private home(): Promise<Home> {
    this.homeOnce ??= Promise.all([this.client.getNodeInfo(), this.client.listPools()]).then(
      ([node, pools]) => ({ nodeId: node.nodeId, zone: node.zone || undefined, hasPools: pools.length > 0 }),
      (error: unknown) => {
        this.homeOnce = undefined;
        throw error;
      },
    );
    return this.homeOnce;
  }
}

/** The source a CreateVolume names; an id that cannot name anything is NOT_FOUND, as the spec says. */
function requestedSource(source: csi.VolumeContentSource | null): Source | undefined {
  if (source?.snapshot) {
    const id = requireString('volume_content_source.snapshot.snapshot_id', source.snapshot.snapshot_id);
    const ref = parseSnapshotId(id);
    if (!ref) throw notFound(`snapshot ${id} does not exist`);
    return { kind: 'snapshot', ref };
  }
  if (source?.volume) {
    return { kind: 'volume', volume: volumeRef(requireString('volume_content_source.volume.volume_id', source.volume.volume_id)) };
  }
  return undefined;
}

function incompatibility(existing: VolumeInfo, range: csi.CapacityRange, parameters: VolumeParameters, source: Source | undefined): string | undefined {
  if (!fitsRange(existing.sizeBytes, range)) {
    return `its size, ${existing.sizeBytes} bytes, is outside capacity_range [${range.required_bytes}, ${range.limit_bytes || 'no limit'}]`;
  }
  if (parameters.class && parameters.class !== existing.class) return `it is in class ${existing.class}, not ${parameters.class}`;
  // A failed copy being replaced stays in the record until its replacement is in sync: not one more copy.
  const copies = existing.replication?.replicas.filter((r) => r.state !== 'failed').length ?? 1;
  if (copies !== parameters.replicas) return `it has ${copies} replica(s), not ${parameters.replicas}`;
  const had = sourceKey(contentSource(existing.sourceSnapshot));
  const wanted = sourceKey(requestedContentSource(source));
  if (had !== wanted) return `it was made from ${had || 'nothing'}, not from ${wanted || 'nothing'}`;
  return undefined;
}

function requestedContentSource(source: Source | undefined): csi.VolumeContentSource | null {
  if (source?.kind === 'snapshot') return { snapshot: { snapshot_id: `${source.ref.volume}@${source.ref.snapshot}` } };
  if (source?.kind === 'volume') return { volume: { volume_id: source.volume } };
  return null;
}

/**
 * A volume made from one that a node holds alone (not a volume of the cluster) is that node's alone
 * too, a clone of its own copy: one copy, on that node, which a requisite topology must include (as
 * for a volume made on the controller's node), and with the locality parameter, where the workload
 * runs. Undefined: no node to prefer.
 */
function fromNodeAlone(requirement: csi.TopologyRequirement | null, parameters: VolumeParameters, place: Place, source: Source): undefined {
  const from = source.kind === 'snapshot' ? `snapshot ${source.ref.volume}@${source.ref.snapshot}` : `volume ${source.volume}`;
  const where = `on node ${place.nodeId}, which holds ${from} alone (not as a volume of the cluster), with one copy`;
  if (parameters.replicas > 1) throw invalidArgument(`a volume from ${from} is made ${where}: replicas "${parameters.replicas}" cannot be made from it`);
  checkRequirement(requirement, place, 'node');
  if (parameters.locality) checkLocality(requirement, place, `a volume from ${from} is made ${where}`);
  return undefined;
}

/** Why the volume does not match the context or parameters a CO validates against, if it does not. */
function contextMismatch(info: VolumeInfo, context: csi.StringMap, parameters: VolumeParameters): string | undefined {
  const wanted = parameters.class ?? context.class;
  return wanted && wanted !== info.class ? `volume ${info.name} is in class ${info.class}, not ${wanted}` : undefined;
}

function volumeStatus(info: VolumeInfo): object {
  return { published_node_ids: [], volume_condition: volumeCondition(info) };
}

/**
 * The restored volume's new writes go to the pool of the class its parameters name (none: the
 * snapshot's); what it does not rewrite is read from the snapshot's pool, so a StorageClass of
 * another class restores at once, without a copy. Its copies (the parameters' replicas) go on
 * nodes that hold the snapshot: its primary goes on the node the topology names first (preferred)
 * if that is one of them, else on one of them (the locality parameter is not a must here).
 */
async function restoreSnapshot(client: WeftClient, volume: string, range: csi.CapacityRange, parameters: VolumeParameters, ref: SnapshotRef, preferredNode: string | undefined): Promise<VolumeInfo> {
  const snapshots = await unlessNotFound(client.listSnapshots(ref.volume));
  const snapshot = snapshots?.find((s) => s.name === ref.snapshot);
  if (!snapshot) throw notFound(`snapshot ${ref.volume}@${ref.snapshot} does not exist`);
  return client.createVolume({ name: volume, sizeBytes: sizeInRange(range, snapshot.sizeBytes), class: parameters.class, replicas: parameters.replicas, sourceSnapshot: ref, preferredNode });
}

/**
 * weftd clones snapshots only, so this snapshots the source under a hidden name (names.ts),
 * clones that snapshot and deletes it again. The clone keeps the blocks it shares with the
 * source (the engine frees a deleted snapshot's blocks only once nothing reads through them), so
 * source and clone are independent: either can be deleted at any time, and the source is left
 * without snapshots. A hidden snapshot left by a crash between the steps is deleted when the CO
 * retries the CreateVolume (reuse), or when the source volume is deleted (deleteVolume). As for a
 * restore, the clone may be in another class than its source, and its primary is placed as a restore's.
 */
async function cloneVolume(client: WeftClient, volume: string, range: csi.CapacityRange, parameters: VolumeParameters, sourceVolume: string, preferredNode: string | undefined, logger: Logger): Promise<VolumeInfo> {
  const source = await client.getVolume(sourceVolume);
  const sizeBytes = sizeInRange(range, source.sizeBytes);
  const snapshot = cloneSnapshotName(volume);
  // One left by an interrupted attempt at this same clone serves as well as a new one.
  await unlessWeftd(status.ALREADY_EXISTS, client.createSnapshot(sourceVolume, snapshot));
  try {
    return await client.createVolume({ name: volume, sizeBytes, class: parameters.class, replicas: parameters.replicas, sourceSnapshot: { volume: sourceVolume, snapshot }, preferredNode });
  } finally {
    await dropCloneSnapshot(client, sourceVolume, snapshot, logger);
  }
}

/**
 * Deletes the hidden snapshot a clone was made from. Its failure must not take the place of the
 * clone's outcome: the snapshot left goes with the next CreateVolume of that clone, or with its
 * volume (logged).
 */
async function dropCloneSnapshot(client: WeftClient, volume: string, snapshot: string, logger: Logger): Promise<void> {
  await unlessNotFound(client.deleteSnapshot(volume, snapshot)).catch((err: unknown) =>
    logger.warn({ err, volume, snapshot }, 'could not delete the hidden snapshot a clone was made from: it stays (holding the blocks it shares) until a CreateVolume of that clone runs again, or its volume is deleted'),
  );
}
