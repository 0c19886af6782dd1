// The node's NodeTelemetry (telemetry.ts) over its running parts: every figure is read from the
// part that counts it at the moment it is asked for; nothing is copied or cached here.

import type { ApiCallStats } from './api/call-stats';
import type { ApiServer } from './api/server';
import type { ServiceClass } from './class-objectives';
import type { ClusterStore } from './cluster/cluster-store';
import type { VolumeController } from './cluster/volume-controller';
import { EventLoopDelay } from './event-loop-delay';
import { exportName } from './nbd-exports';
import type { NbdServer } from './nbd/server';
import type { NodeTelemetry, ReadinessCheck, WorkloadReport } from './telemetry';
import type { LocalEngine } from './volume/local-engine';
import type { VolumeMetrics, VolumeStats } from './volume/metrics-device';

/** The cluster store answers within this, or the node is not ready. */
const STORE_CHECK_TIMEOUT_MS = 2000;

export interface TelemetryParts {
  nodeId: string;
  classes: ServiceClass[];
  engine: LocalEngine;
  /** Absent when metrics are off: no I/O is counted. */
  volumeMetrics?: VolumeMetrics;
  nbd: NbdServer;
  api: ApiServer;
  apiCalls: ApiCallStats;
  controller: VolumeController;
  store: ClusterStore;
}

/** The telemetry of a node, and stop() for the event-loop monitor it runs. */
export function nodeTelemetry(parts: TelemetryParts): NodeTelemetry & { stop(): void } {
  const { engine, controller } = parts;
  const eventLoop = new EventLoopDelay();
  // A scrape asks every family in one turn, and several ask for the same lists.
  const volumeIo = oncePerTurn(() => parts.volumeMetrics?.current() ?? []);
  const volumes = oncePerTurn(() => engine.listVolumes());
  return {
    nodeId: parts.nodeId,
    volumeIo: () => volumeIo().map(([volume, stats]) => ({ volume, stats })),
    volumes: () => volumes().map((v) => ({ name: v.name, class: v.class, sizeBytes: v.sizeBytes, allocatedBytes: v.allocatedBytes })),
    workloads: () => workloadsOf(parts, new Map(volumeIo())),
    checksumErrors: () => [
      ...volumes().map((v) => ({ volume: v.name, errors: v.checksumErrors })),
      ...engine.listSnapshots().map((s) => ({ volume: exportName({ volume: s.volume, snapshot: s.name }), errors: s.checksumErrors })),
    ],
    pools: () => engine.listPools(),
    classes: () => parts.classes,
    nbdConnections: () => parts.nbd.connectionCount(),
    nbdRefusedConnections: () => parts.nbd.refusedConnections(),
    apiCalls: () => parts.apiCalls.all(),
    journal: () => ({ bytes: engine.metadata.journalBytes, checkpoints: engine.checkpoints }),
    eventLoopDelay: () => eventLoop.read(),
    replicatedVolumes: () =>
      controller.served().map(({ record, replicas }) => ({
        volume: record.name,
        epoch: record.epoch,
        copies: record.replicas.map((copy) => ({ node: copy.node, state: copy.state })),
        remotes: (replicas ?? []).map((r) => ({ node: r.id, behindBytes: r.behindBytes, resyncTotalBytes: r.resyncTotalBytes, resyncCopiedBytes: r.resyncCopiedBytes })),
      })),
    readiness: async (): Promise<ReadinessCheck[]> => [
      engine.store.closed ? { name: 'engine', ok: false, detail: 'the storage engine is closed' } : { name: 'engine', ok: true },
      await storeCheck(parts.store),
      parts.api.listening ? { name: 'api', ok: true } : { name: 'api', ok: false, detail: 'the control API is not listening' },
    ],
    stop: () => eventLoop.stop(),
  };
}

/**
 * fn, computed once per turn of the event loop: a Prometheus scrape collects every family in one
 * turn, and listing every volume of a node for each of them blocked the loop (and its I/O) 14 times.
 */
function oncePerTurn<T>(fn: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: fn() };
      setImmediate(() => (cached = undefined));
    }
    return cached.value;
  };
}

async function storeCheck(store: ClusterStore): Promise<ReadinessCheck> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${STORE_CHECK_TIMEOUT_MS} ms`)), STORE_CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([store.revision(), timeout]);
    return { name: 'store', ok: true };
  } catch (error) {
    return { name: 'store', ok: false, detail: `the cluster store is unreachable: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** One report per workload of each attachment on this node, with the attached volume's I/O here. */
function workloadsOf(parts: TelemetryParts, io: Map<string, VolumeStats>): WorkloadReport[] {
  const classOf = (volume: string) => (parts.engine.hasVolume(volume) ? parts.engine.getVolume(volume).class : (parts.controller.record(volume)?.class ?? ''));
  return parts.api.attachments.list({ nodeId: parts.nodeId }).flatMap((attachment) =>
    attachment.workloads.map((w) => ({
      volume: attachment.volume,
      class: classOf(attachment.volume),
      orchestrator: w.orchestrator,
      namespace: w.podNamespace ?? '',
      pod: w.podName ?? '',
      pvc: w.pvcName ?? '',
      alloc: w.allocationId ?? '',
      job: w.jobId ?? '',
      task: w.taskId ?? '',
      stats: io.get(attachment.volume),
    })),
  );
}
