// VolumeService: validates each request, then makes one call to the engine. Verify streams
// progress (at most one message per percent) and ends with the report. A deleted volume's
// attachment records go with it.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VolumeEngine, VolumeInfo } from '../volume/types';
import { invalidArgument } from '../errors';
import { DirtyMap } from '../replication/dirty-map';
import type { CopyOperation } from '../replication/replication-layer';
import type { AttachmentStore } from './attachments';
import { replicaCount, type ReplicatedVolumes } from './cluster-volumes';
import { volumeToWire } from './messages';
import type * as wire from './messages';
import { serverStream, unary } from './rpc';
import { checkExportName, checkName, checkOptionalName, checkOptionalSize, checkSize } from './validate';

export function volumeService(engine: VolumeEngine, attachments: AttachmentStore, cluster: ReplicatedVolumes, logger: Logger): UntypedServiceImplementation {
  return {
    CreateVolume: unary(logger, async (request: wire.CreateVolumeRequest) => volumeToWire(await createVolume(engine, cluster, request))),
    ListVolumes: unary(logger, () => ({ volumes: cluster.list().map(volumeToWire) })),
    GetVolume: unary(logger, (request: wire.NameRequest) => volumeToWire(cluster.info(checkName('name', request.name)))),
    ResizeVolume: unary(logger, async (request: wire.ResizeVolumeRequest) =>
      volumeToWire(await cluster.resize(checkName('name', request.name), checkSize('size_bytes', request.sizeBytes))),
    ),
    DeleteVolume: unary(logger, async (request: wire.NameRequest) => {
      const name = checkName('name', request.name);
      await (cluster.isReplicated(name) ? cluster.delete(name) : engine.deleteVolume(name));
      attachments.removeVolume(name);
      return {};
    }),
    VerifyVolume: serverStream(logger, (request: wire.NameRequest, send: (m: wire.VerifyVolumeResponse) => void) =>
      verifyVolume(engine, cluster, request, send),
    ),
    RevertVolume: unary(logger, async (request: wire.RevertVolumeRequest) =>
      volumeToWire(await engine.revertVolume(checkName('name', request.name), checkName('snapshot', request.snapshot))),
    ),
  };
}

/**
 * More than one replica, or a locality, makes a volume of the cluster (so does asking a node that
 * has no pool). A clone's class is where its
 * new writes go (the engine defaults it to the snapshot's).
 */
function createVolume(engine: VolumeEngine, cluster: ReplicatedVolumes, request: wire.CreateVolumeRequest): Promise<VolumeInfo> {
  const name = checkName('name', request.name);
  const poolClass = checkOptionalName('class', request.class);
  const source = request.sourceSnapshot;
  const replicas = replicaCount(request.replicas);
  const locality = checkOptionalName('locality', request.locality);
  // A node with no pool of its own (weftd --pool none: a CSI controller) places every new volume through the cluster.
  if (replicas > 1 || locality !== undefined || (!source && engine.listPools().length === 0)) {
    if (source) throw invalidArgument('a clone is made on the node that holds the snapshot: replicas and locality do not apply to clones yet');
    return cluster.create({ name, sizeBytes: checkSize('size_bytes', request.sizeBytes), class: poolClass, replicas, locality });
  }
  if (!source) return engine.createVolume({ name, sizeBytes: checkSize('size_bytes', request.sizeBytes), class: poolClass });
  return engine.cloneVolume({
    name,
    volume: checkName('source_snapshot.volume', source.volume),
    snapshot: checkName('source_snapshot.snapshot', source.snapshot),
    sizeBytes: checkOptionalSize('size_bytes', request.sizeBytes),
    class: poolClass,
  });
}

/** A replicated volume's copies are compared (and repaired) by its primary; a snapshot, or a volume of this node's alone, is scrubbed here. */
async function verifyVolume(
  engine: VolumeEngine,
  cluster: ReplicatedVolumes,
  request: wire.NameRequest,
  send: (message: wire.VerifyVolumeResponse) => void,
): Promise<void> {
  const name = checkExportName('name', request.name);
  // The API names a snapshot VOL@SNAP, as NBD does; the engine takes the two names apart.
  const at = name.indexOf('@');
  const progress = percentSteps((p) => send({ progress: p }));
  if (at < 0 && cluster.isReplicated(name)) {
    send({ report: await cluster.verify(name, progress) });
    return;
  }
  const report = at < 0 ? await engine.verifyVolume(name, progress) : await engine.verifyVolume(name.slice(0, at), progress, name.slice(at + 1));
  send({ report: { volume: name, checkedBlocks: report.checkedBlocks, badBlockOffsets: report.badBlockOffsets } });
}

/** Passes progress on only when the whole percentage changes, so a big volume sends ~100 messages. */
export function percentSteps(
  send: (progress: wire.VerifyProgress) => void,
): (doneBlocks: number, totalBlocks: number) => void {
  let lastPercent = -1;
  return (doneBlocks, totalBlocks) => {
    const percent = totalBlocks === 0 ? 100 : Math.floor((doneBlocks * 100) / totalBlocks);
    if (percent === lastPercent) return;
    lastPercent = percent;
    send({ doneBlocks, totalBlocks });
  };
}

/** ReplicaService: a node's own copy of a replicated volume, made or dropped at another node's request. */
export function replicaService(cluster: ReplicatedVolumes, logger: Logger): UntypedServiceImplementation {
  return {
    CreateCopy: unary(logger, async (request: wire.CreateCopyRequest) =>
      volumeToWire(await cluster.createCopy(checkName('name', request.name), checkSize('size_bytes', request.sizeBytes), checkName('class', request.class))),
    ),
    DeleteCopy: unary(logger, async (request: wire.DeleteCopyRequest) => {
      await cluster.deleteCopy(checkName('name', request.name), request.checkOnly);
      return {};
    }),
    TrackAbsence: unary(logger, async (request: wire.TrackAbsenceRequest) => {
      const absence = request.forget ? null : { full: request.full, map: decodeMap(request.map) };
      await cluster.trackAbsence(checkName('name', request.name), request.epoch, checkName('absent', request.absent), absence);
      return {};
    }),
    ControlCopy: unary(logger, async (request: wire.ControlCopyRequest) => {
      await cluster.controlCopy(checkName('name', request.name), copyOperation(request), request.epoch);
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

function copyOperation(request: wire.ControlCopyRequest): CopyOperation {
  if (request.snapshot) return { type: 'snapshot', name: checkName('snapshot', request.snapshot) };
  if (request.deleteSnapshot) return { type: 'delete-snapshot', name: checkName('delete_snapshot', request.deleteSnapshot) };
  return { type: 'resize', sizeBytes: checkSize('size_bytes', request.sizeBytes) };
}
