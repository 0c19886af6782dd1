// VolumeService: validates each request, then makes one call to the engine. Verify streams
// progress (a message per percent, and one at least every half second while it moves: the caller
// takes silence for a stuck node) and ends with the report. A deleted volume's
// attachment records go with it. VolumeStats reads the metrics layer's counters.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { VolumeEngine, VolumeInfo } from '../volume/types';
import { failedPrecondition, invalidArgument } from '../errors';
import { DirtyMap } from '../replication/dirty-map';
import type { CopyOperation } from '../replication/replication-layer';
import type { AttachmentStore } from './attachments';
import { isNotFound, replicaCount, type ReplicatedVolumes } from './cluster-volumes';
import { checksumsToWire, volumeToWire } from './messages';
import type * as wire from './messages';
import { serverStream, unary, type RpcContext } from './rpc';
import { volumeStats, type VolumeStatsSource } from './volume-stats';
import { checkExportName, checkName, checkOptionalName, checkOptionalSize, checkSize } from './validate';

export function volumeService(engine: VolumeEngine, attachments: AttachmentStore, cluster: ReplicatedVolumes, stats: VolumeStatsSource, rpc: RpcContext): UntypedServiceImplementation {
  return {
    CreateVolume: unary(rpc, async (request: wire.CreateVolumeRequest) => volumeToWire(await createVolume(engine, cluster, request))),
    ListVolumes: unary(rpc, () => ({ volumes: cluster.list().map(volumeToWire) })),
    GetVolume: unary(rpc, (request: wire.NameRequest) => volumeToWire(cluster.info(checkName('name', request.name)))),
    ResizeVolume: unary(rpc, async (request: wire.ResizeVolumeRequest) =>
      volumeToWire(await cluster.resize(checkName('name', request.name), checkSize('size_bytes', request.sizeBytes))),
    ),
    DeleteVolume: unary(rpc, async (request: wire.NameRequest) => {
      const name = checkName('name', request.name);
      await (cluster.isReplicated(name) ? cluster.delete(name) : cluster.deleteHere(name));
      attachments.removeVolume(name);
      return {};
    }),
    VerifyVolume: serverStream(rpc, (request: wire.NameRequest, send: (m: wire.VerifyVolumeResponse) => void, gone: AbortSignal) =>
      verifyVolume(engine, cluster, request, send, gone),
    ),
    RevertVolume: unary(rpc, async (request: wire.RevertVolumeRequest) =>
      volumeToWire(await cluster.revert(checkName('name', request.name), checkName('snapshot', request.snapshot))),
    ),
    VolumeStats: unary(rpc, (request: wire.VolumeStatsRequest) => volumeStats(stats, cluster, request.name)),
  };
}

/**
 * More than one replica, or a locality, makes a volume of the cluster (so does asking a node that
 * has no pool: weftd --pool none, a CSI controller). A clone's class is where its new writes go
 * (default: the snapshot's); a clone of the cluster goes on nodes that hold the snapshot.
 */
function createVolume(engine: VolumeEngine, cluster: ReplicatedVolumes, request: wire.CreateVolumeRequest): Promise<VolumeInfo> {
  const name = checkName('name', request.name);
  const poolClass = checkOptionalName('class', request.class);
  const replicas = replicaCount(request.replicas);
  const locality = checkOptionalName('locality', request.locality);
  const preferredNode = checkOptionalName('preferred_node', request.preferredNode);
  // A preferred node places a new volume through the cluster, not a clone (of a snapshot perhaps of this node's alone).
  const placed = replicas > 1 || locality !== undefined || engine.listPools().length === 0;
  if (request.sourceSnapshot) {
    const source = checkSource(request.sourceSnapshot);
    const sizeBytes = checkOptionalSize('size_bytes', request.sizeBytes);
    if (placed) return cluster.clone({ name, source, sizeBytes, class: poolClass, replicas, locality, preferredNode });
    return cluster.cloneHere({ name, ...source, sizeBytes, class: poolClass });
  }
  const sizeBytes = checkSize('size_bytes', request.sizeBytes);
  if (placed || preferredNode !== undefined) return cluster.create({ name, sizeBytes, class: poolClass, replicas, locality, preferredNode });
  return cluster.createHere({ name, sizeBytes, class: poolClass });
}

/**
 * A replicated volume's copies are compared (and repaired) by its primary; a snapshot, or a volume of
 * this node's alone, is scrubbed here. A caller that goes away stops it (a verify holds its volume
 * open, which refuses a delete or a revert until it ends).
 */
async function verifyVolume(
  engine: VolumeEngine,
  cluster: ReplicatedVolumes,
  request: wire.NameRequest,
  send: (message: wire.VerifyVolumeResponse) => void,
  gone: AbortSignal,
): Promise<void> {
  const name = checkExportName('name', request.name);
  // The API names a snapshot VOL@SNAP, as NBD does; the engine takes the two names apart.
  const at = name.indexOf('@');
  const progress = percentSteps((p) => send({ progress: p }));
  if (at < 0 && cluster.isReplicated(name)) {
    send({ report: await cluster.verify(name, progress, gone) });
    return;
  }
  // A replicated volume's snapshot is on its copies' nodes: elsewhere it is not "absent" (NOT_FOUND
  // tells a script it does not exist).
  const volume = name.slice(0, at);
  if (at >= 0 && cluster.isReplicated(volume) && !engine.listNames().volumes.includes(volume)) {
    const copies = cluster.info(volume).replication?.replicas.map((r) => r.node) ?? [];
    throw failedPrecondition(`snapshot ${name} is on the nodes of the volume's copies (${copies.join(', ')}), not on this one: verify it through one of them`);
  }
  // Not here, and held elsewhere: by the older copies (this one made after it), or kept by other
  // nodes after its volume was deleted.
  const snapshot = name.slice(at + 1);
  if (at >= 0 && !cluster.copySnapshots(volume).some((s) => s.name === snapshot)) {
    // Unknown if the listing fails (the store or the primary out of reach): that, not NOT_FOUND.
    const listed = await cluster.listSnapshots(volume).catch((err: Error) => {
      if (isNotFound(err)) return [];
      throw err;
    });
    if (listed.some((s) => s.name === snapshot)) throw failedPrecondition(`snapshot ${name} is not on this node: verify it through a node that holds it`);
  }
  const report = at < 0 ? await engine.verifyVolume(name, progress, undefined, gone) : await engine.verifyVolume(name.slice(0, at), progress, name.slice(at + 1), gone);
  send({ report: { volume: name, checkedBlocks: report.checkedBlocks, badBlockOffsets: report.badBlockOffsets } });
}

/** The longest a verify that moves goes without a progress message (WeftClient.verifyVolume's stall deadline is at least 1 s). */
export const PROGRESS_HEARTBEAT_MS = 500;

/**
 * Passes progress on when the whole percentage changes (a volume of any size sends ~100 such
 * messages), and also when PROGRESS_HEARTBEAT_MS have gone by since the last one: a percent of a
 * big volume can take minutes, and the caller must tell a verify that moves from a stuck one.
 */
export function percentSteps(
  send: (progress: wire.VerifyProgress) => void,
  now: () => number = Date.now,
): (doneBlocks: number, totalBlocks: number) => void {
  let lastPercent = -1;
  let lastSentAt = 0;
  return (doneBlocks, totalBlocks) => {
    const percent = totalBlocks === 0 ? 100 : Math.floor((doneBlocks * 100) / totalBlocks);
    if (percent === lastPercent && now() - lastSentAt < PROGRESS_HEARTBEAT_MS) return;
    lastPercent = percent;
    lastSentAt = now();
    send({ doneBlocks, totalBlocks, heartbeatMs: PROGRESS_HEARTBEAT_MS });
  };
}

/** ReplicaService: a node's own copy of a replicated volume, made or dropped at another node's request. */
export function replicaService(cluster: ReplicatedVolumes, rpc: RpcContext): UntypedServiceImplementation {
  return {
    CreateCopy: unary(rpc, async (request: wire.CreateCopyRequest) =>
      volumeToWire(
        await cluster.createCopy(
          checkName('name', request.name),
          checkSize('size_bytes', request.sizeBytes),
          checkName('class', request.class),
          request.sourceSnapshot ? checkSource(request.sourceSnapshot) : undefined,
          request.createId ? { id: request.createId, marked: request.marked } : undefined,
          request.replacement,
        ),
      ),
    ),
    DeleteCopy: unary(rpc, async (request: wire.DeleteCopyRequest) => {
      const name = checkName('name', request.name);
      await (request.leftover ? cluster.dropLeftover(name) : cluster.deleteCopy(name, request.checkOnly));
      return {};
    }),
    GetActivity: unary(rpc, async (request: wire.GetActivityRequest) => {
      const activity = await cluster.activity(checkName('name', request.name));
      return { epoch: activity.epoch, map: activity.map.encode() };
    }),
    TrackActivity: unary(rpc, async (request: wire.TrackActivityRequest) => {
      await cluster.trackActivity(checkName('name', request.name), request.epoch, request.revision, request.extents ?? []);
      return {};
    }),
    BlockChecksums: unary(rpc, async (request: wire.BlockChecksumsRequest) => {
      const crcs = await cluster.blockChecksums(checkName('name', request.name), request.epoch, request.offsetBytes, request.lengthBytes);
      return { crc32c: checksumsToWire(crcs) };
    }),
    TrackAbsence: unary(rpc, async (request: wire.TrackAbsenceRequest) => {
      const absence = request.forget ? null : { full: request.full, map: decodeMap(request.map) };
      await cluster.trackAbsence(checkName('name', request.name), request.epoch, checkName('absent', request.absent), absence);
      return {};
    }),
    CopySnapshots: unary(rpc, (request: wire.NameRequest) => ({ snapshots: cluster.copySnapshots(checkName('name', request.name)) })),
    ControlCopy: unary(rpc, async (request: wire.ControlCopyRequest) => {
      const name = checkName('name', request.name);
      if (request.settle.length > 0) await cluster.settleCopyControls(name, request.settle);
      else await cluster.controlCopy(name, copyOperation(request), request.epoch);
      return {};
    }),
  };
}

function decodeMap(bytes: Buffer): DirtyMap {
  try {
    return DirtyMap.decode(bytes);
  } catch (err) {
    throw invalidArgument(`map: ${(err as Error).message}`);
  }
}

function checkSource(source: wire.SnapshotRef): wire.SnapshotRef {
  return { volume: checkName('source_snapshot.volume', source.volume), snapshot: checkName('source_snapshot.snapshot', source.snapshot) };
}

function copyOperation(request: wire.ControlCopyRequest): CopyOperation {
  const id = request.operationId || undefined;
  if (request.snapshot) return { type: 'snapshot', name: checkName('snapshot', request.snapshot), id };
  if (request.deleteSnapshot) return { type: 'delete-snapshot', name: checkName('delete_snapshot', request.deleteSnapshot), id };
  if (request.revertTo) return { type: 'revert', snapshot: checkName('revert_to', request.revertTo), checkOnly: request.checkOnly, id };
  return { type: 'resize', sizeBytes: checkSize('size_bytes', request.sizeBytes), checkOnly: request.checkOnly, id };
}
