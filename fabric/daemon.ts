// Wires one node together: the storage engine, the cluster store, the NBD server over its volumes,
// the gRPC control API, and any plugins the caller passes in (the CSI driver, the metrics exporter,
// which reads the node's telemetry). weftd.ts starts it; tests may start it in-process. Fabric knows
// plugins only by this interface.

import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ApiCallStats } from './api/call-stats';
import { reachableAddress } from './api/node-info';
import { ClusterVolumes } from './api/cluster-volumes';
import { ApiServer } from './api/server';
import { listNodes, Membership, type NodeRecord } from './cluster/membership';
import { openClusterStore } from './cluster/open-store';
import { dropLeftovers } from './cluster/leftovers';
import { AttachClaims } from './cluster/attach-claims';
import { forgetNode } from './cluster/forget-node';
import { VolumeController } from './cluster/volume-controller';
import type { WeftdConfig } from './config';
import type { Logger } from './logger';
import { EngineExports, exportName, exportNames } from './nbd-exports';
import { NbdServer } from './nbd/server';
import { FORMAT_VERSION, LocalEngine } from './volume/local-engine';
import type { ForwardingDevice } from './replication/forwarding-device';
import type { LocalReplica } from './volume/local-replica';
import { DeviceHandle } from './volume/device-handle';
import { MetricsDevice, VolumeMetrics } from './volume/metrics-device';
import { listen } from './listen';
import { nodeTelemetry } from './node-telemetry';
import type { NodeTelemetry } from './telemetry';
import type { OpenDevice } from './volume/types';
import type { VolumeRef, VolumeStack } from './volume/volume';

export interface NodeHandle {
  /** The ports actually bound (they differ from the config's when it asked for 0). */
  nbdPort: number;
  apiPort: number;
  /** 0 when no plugin serves metrics. */
  metricsPort: number;
  /** Stops accepting, lets in-flight requests finish, closes every server, flushes and closes the engine. */
  stop(): Promise<void>;
}

/** What a plugin is given: the node's configuration, a logger, where the control API answers, what the node reports. */
export interface PluginContext {
  config: WeftdConfig;
  logger: Logger;
  /** "HOST:PORT" of this node's control API, reachable from this host. */
  apiEndpoint: string;
  telemetry: NodeTelemetry;
  /** Where a plugin serving gRPC (the CSI driver) counts its calls, beside the control API's. */
  apiCalls: ApiCallStats;
  /** The ports bound; metrics is that of a plugin started before this one (the exporter), or 0. */
  ports: { nbd: number; api: number; metrics: number };
  /** weftd's version. */
  version: string;
}

export interface StartedPlugin {
  stop(): Promise<void>;
  /** The port a plugin serves metrics on (the exporter), for the ready line and GetNodeInfo. */
  metricsPort?: number;
}

/** An extra service run by the daemon (e.g. the CSI driver). It starts once the control API listens. */
export interface DaemonPlugin {
  readonly name: string;
  start(context: PluginContext): Promise<StartedPlugin>;
}

/**
 * Starts every part of the node, then the plugins, or stops whatever it had started and throws a
 * one-line error. Plugins stop first, before the API they use.
 */
export async function startNode(config: WeftdConfig, logger: Logger, plugins: readonly DaemonPlugin[] = []): Promise<NodeHandle> {
  const startedAt = new Date();
  routeGrpcLogs(logger.child({ component: 'grpc' }));
  const running = new RunningParts(logger);
  try {
    // The volume metrics drop the stats of deleted volumes; they ask the engine once it exists.
    // With metrics off, the volumes' stacks have no metrics layer at all.
    let liveExports: () => string[] = () => [];
    const volumeMetrics = config.metricsPort === 'off' ? undefined : new VolumeMetrics(() => liveExports());
    let clusterVolumes: ClusterVolumes | undefined; // set once the store is open; the controller's copies are controlled through it
    // Made before the engine, which builds each volume's stack (with its replication layer) as it opens.
    const controller = VolumeController.create({
      self: config.nodeId,
      raiseLocalEpoch: async (volume, epoch) => {
        if (engine.getVolume(volume).epoch < epoch) await engine.raiseEpoch(volume, epoch);
      },
      localFence: (volume) => engine.fence(volume),
      hasCopy: (volume) => engine.hasVolume(volume),
      // Only a serving primary controls copies, and it serves only once the API (and clusterVolumes) exists.
      controlCopy: (node, volume, operation, epoch) => (clusterVolumes as ClusterVolumes).controlCopyOn(node, volume, operation, epoch, true),
      settleCopyControls: (node, volume, ids) => (clusterVolumes as ClusterVolumes).settleCopyControlsOn(node, volume, ids),
      copySnapshotNames: (node, volume) => (clusterVolumes as ClusterVolumes).copySnapshotNamesOn(node, volume),
      createCopy: (node, volume, sizeBytes, poolClass) => (clusterVolumes as ClusterVolumes).createReplacementOn(node, volume, sizeBytes, poolClass),
      trackAbsence: (node, volume, epoch, absent, absence) => (clusterVolumes as ClusterVolumes).trackAbsenceOn(node, volume, epoch, absent, absence),
      activityOf: (node, volume) => (clusterVolumes as ClusterVolumes).activityOn(node, volume),
      trackActivity: (node, volume, epoch, revision, extents) => (clusterVolumes as ClusterVolumes).trackActivityOn(node, volume, epoch, revision, extents),
      blockChecksums: (node, volume, epoch, offsetBytes, lengthBytes) => (clusterVolumes as ClusterVolumes).blockChecksumsOn(node, volume, epoch, offsetBytes, lengthBytes),
      absenceDir: path.join(config.dataDir, 'replication'),
      brain: { replicaTimeoutMs: config.replicaTimeoutMs },
      logger: logger.child({ component: 'volumes' }),
    });
    const engine: LocalEngine = await LocalEngine.open({
      dataDir: config.dataDir,
      pools: config.pools,
      logger: logger.child({ component: 'engine' }),
      syncIntervalMs: config.syncIntervalMs,
      stackFor: (replica, ref) => stackFor(replica, ref, volumeMetrics, controller),
    });
    // Replicated volumes this node holds no copy of count here too while their clients attach here.
    liveExports = () => [...exportNames(engine), ...controller.recordNames()];
    running.add('engine', () => engine.close());

    // After the engine, which holds the data dir's lock (the embedded store keeps its file there).
    const store = await openClusterStore(config.store, config.dataDir, logger.child({ component: 'cluster-store' }));
    running.add('cluster store', () => store.close());
    // Before NBD serves: a copy of a replicated volume is never served as if it were this node's alone.
    await controller.start(store);
    running.add('volume controller', () => controller.close());

    const exports = new EngineExports(engine, {
      self: config.nodeId,
      primaryExport: (volume, afterEpoch, createId) => controller.primaryExport(volume, afterEpoch, createId),
      retired: (volume) => controller.retired(volume),
      replaced: (volume) => controller.replaced(volume),
      volumeNames: () => controller.recordNames(),
      snapshotting: (volume) => controller.record(volume)?.snapshotting,
      snapshottingNow: (volume) => controller.snapshottingNow(volume),
      remoteExport: (volume) => countedForwarder(controller.remoteExport(volume), volume, volumeMetrics),
      attachedNode: (volume) => controller.attachedNode(volume),
      attachedNodeNow: (volume) => controller.attachedNodeNow(volume),
    });
    const nbd = new NbdServer({
      provider: exports,
      logger: logger.child({ component: 'nbd' }),
      maxConnectionInFlightBytes: config.maxConnectionInflightBytes,
      maxInFlightBytes: config.maxInflightBytes,
      maxConnections: config.nbdMaxConnections,
    });
    const nbdPort = await listen('nbd', config.listen, config.nbdPort, () => nbd.listen(config.listen, config.nbdPort));
    running.add('nbd', () => nbd.close());

    // metricsPort: set once the exporter plugin listens.
    const node = { nodeId: config.nodeId, version: weftVersion(), listenAddress: config.listen, nbdPort, metricsPort: 0, dataDir: config.dataDir, formatVersion: FORMAT_VERSION, startedAt, zone: config.zone };
    clusterVolumes = new ClusterVolumes(engine, controller, store, config.nodeId, logger.child({ component: 'volumes' }), (volume) => exports.forwardedFrom(volume));
    running.add('node clients', async () => clusterVolumes?.close());
    const apiCalls = new ApiCallStats();
    const claims = new AttachClaims(store, config.nodeId, (volume) => clusterVolumes?.isReplicated(volume) ?? false, logger.child({ component: 'attach-claims' }));
    running.add('attach claims', async () => claims.close());
    const api = new ApiServer({ engine, node, cluster: { listNodes: () => listNodes(store), forgetNode: (id) => forgetNode(store, id) }, clusterVolumes, claims, calls: apiCalls, classes: config.classes, volumeStats: volumeMetrics, logger: logger.child({ component: 'api' }) });
    const apiPort = await listen('api', config.listen, config.apiPort, () => api.listen(config.listen, config.apiPort));
    running.add('api', () => api.close());

    // Once its services answer: other nodes may use what it registers at once.
    const ownVolumes = () => clusterVolumes?.ownVolumeNames() ?? [];
    const membership = await Membership.join(store, () => nodeRecord(config, engine, node.version, nbdPort, apiPort, ownVolumes()), logger.child({ component: 'membership' }));
    running.add('membership', () => membership.leave());
    membership.onLease((leaseId) => controller.setNodeLease(leaseId));
    membership.onLease((leaseId) => claims.setLease(leaseId));
    const leftovers = await dropLeftovers(store, config.nodeId, (volume) => (clusterVolumes as ClusterVolumes).dropLeftover(volume), logger.child({ component: 'volumes' }));
    running.add('leftovers', () => leftovers.close());
    // At start, and on each new lease: a node cut from the store for a while may have missed deletes,
    // and a create this node ran in its last life (or another node's, cut short) may be left half made.
    membership.onLease((leaseId) => {
      if (leaseId === null) return;
      void clusterVolumes?.tidyKept().catch((err: unknown) => logger.warn({ err }, 'could not tidy the snapshots this node keeps of deleted volumes'));
      void clusterVolumes?.giveUpAbandonedCreates().catch((err: unknown) => logger.warn({ err }, 'could not look for creates cut short'));
    });

    const telemetry = nodeTelemetry({ nodeId: config.nodeId, classes: config.classes, engine, volumeMetrics, nbd, api, apiCalls, controller, store });
    running.add('telemetry', async () => telemetry.stop());
    const apiEndpoint = reachableAddress(config.listen, apiPort);
    for (const plugin of plugins) {
      const ports = { nbd: nbdPort, api: apiPort, metrics: node.metricsPort };
      const started = await plugin.start({ config, logger: logger.child({ component: plugin.name }), apiEndpoint, telemetry, apiCalls, ports, version: node.version });
      running.add(plugin.name, () => started.stop());
      node.metricsPort = started.metricsPort ?? node.metricsPort;
    }

    return { nbdPort, apiPort, metricsPort: node.metricsPort, stop: () => running.stopAll() };
  } catch (error) {
    await running.stopAll().catch(() => undefined); // logged: the start's own error is the one to tell
    throw error;
  }
}

/** What this node registers in the cluster store (refreshed as its pools fill). */
function nodeRecord(config: WeftdConfig, engine: LocalEngine, version: string, nbdPort: number, apiPort: number, ownVolumes: string[]): Omit<NodeRecord, 'updatedAt'> {
  return {
    id: config.nodeId,
    address: config.advertise,
    zone: config.zone,
    nbdPort,
    apiPort,
    version,
    pools: engine.listPools().map((p) => ({ class: p.class, capacityBytes: p.capacityBytes, usedBytes: p.usedBytes, provisionedBytes: p.provisionedBytes })),
    volumes: engine.listVolumes().length,
    ownVolumes,
  };
}

/**
 * The layers of every volume, built once per volume: metrics (unless they are off), (later: QoS),
 * replication, (later: encryption), the local replica. A snapshot is read-only and this node's: metrics only.
 */
export function stackFor(replica: LocalReplica, ref: VolumeRef, metrics: VolumeMetrics | undefined, controller?: VolumeController): VolumeStack {
  const { layer, copy } = controller && ref.snapshot === undefined ? controller.layerFor(ref.volume, replica) : { layer: replica, copy: replica };
  return { top: metrics ? new MetricsDevice(layer, metrics.forVolume(exportName(ref))) : layer, copy };
}

/**
 * The export of a replicated volume this node holds no copy of, with the metrics layer a copy's
 * stack has: its clients' I/O is counted on the node they attach to, as everywhere. (The primary
 * does not count what nodes forward to it, so nothing is counted twice.) A handle, as a copy's
 * export is: its requests name it as their owner, so that a client's hard disconnect stops their
 * re-issue as it does there; closing it releases the forwarder the volume's clients here share
 * (VolumeController.remoteExport: the last release closes it).
 */
function countedForwarder(shared: { forwarder: ForwardingDevice; release: () => void } | undefined, volume: string, metrics: VolumeMetrics | undefined): OpenDevice | undefined {
  if (!shared) return undefined;
  const { forwarder, release } = shared;
  return new DeviceHandle(metrics ? new MetricsDevice(forwarder, metrics.forVolume(volume)) : forwarder, release);
}

/** What has been started, stopped in reverse order, once. */
class RunningParts {
  private readonly parts: { name: string; stop: () => Promise<void> }[] = [];
  private stopping?: Promise<void>;

  constructor(private readonly logger: Logger) {}

  add(name: string, stop: () => Promise<void>): void {
    this.parts.push({ name, stop });
  }

  stopAll(): Promise<void> {
    this.stopping ??= this.stopInReverse();
    return this.stopping;
  }

  /** Every part stopped, even after one failed; rejects then, naming them (weftd exits 1: not a clean stop). */
  private async stopInReverse(): Promise<void> {
    const failed: string[] = [];
    for (const part of [...this.parts].reverse()) {
      try {
        await part.stop();
        this.logger.debug({ part: part.name }, 'stopped');
      } catch (error) {
        this.logger.error({ part: part.name, err: error }, 'failed to stop cleanly');
        failed.push(`${part.name}: ${(error as Error).message}`);
      }
    }
    if (failed.length > 0) throw new Error(`parts that did not stop cleanly: ${failed.join('; ')}`);
  }
}

/** gRPC's own diagnostics become JSON log lines like the rest, instead of raw text on stderr. */
function routeGrpcLogs(logger: Logger): void {
  const format = (message?: unknown, ...rest: unknown[]) => [message, ...rest].map(String).join(' ');
  grpc.setLogger({
    error: (...args: unknown[]) => logger.warn(format(...args)),
    info: (...args: unknown[]) => logger.info(format(...args)),
    debug: (...args: unknown[]) => logger.debug(format(...args)),
  });
}

/** weftd's version, from the package.json two levels above dist/fabric/. */
function weftVersion(): string {
  const file = path.resolve(__dirname, '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}
