// ApiServer: the node's gRPC control API (VolumeService, SnapshotService, PoolService,
// NodeService, AttachmentService) over one VolumeEngine, on one host:port.

import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VolumeEngine } from '../volume/types';
import { attachmentService, type VolumeClaims } from './attachment-service';
import { AttachmentStore } from './attachments';
import { MAX_MESSAGE_BYTES, serviceDefinition } from './definition';
import type { NodeInfo } from './node-info';
import { hostPort } from '../listen';
import { nodeService, type ClusterView } from './node-service';
import { poolService } from './pool-service';
import { snapshotService } from './snapshot-service';
import { localVolumesOnly, type ReplicatedVolumes } from './cluster-volumes';
import { replicaService, volumeService } from './volume-service';
import { ApiCallStats } from './call-stats';
import type { RpcContext } from './rpc';
import type { ServiceClass } from '../class-objectives';
import { NO_STATS, type VolumeStatsSource } from './volume-stats';

export interface ApiServerOptions {
  engine: VolumeEngine;
  node: NodeInfo;
  cluster: ClusterView;
  /** Replicated volumes: made and dropped through the cluster. */
  clusterVolumes?: ReplicatedVolumes;
  /** Claims on volumes of the cluster for this node's attachments; default: none (a node without a cluster). */
  claims?: VolumeClaims;
  /** The volumes' I/O counters (the daemon's metrics layer); default: none, every volume reads as idle. */
  volumeStats?: VolumeStatsSource;
  logger: Logger;
  /** Where calls are counted, per method and code (a new count when not given). */
  calls?: ApiCallStats;
  /** The service classes weftd's config declares (ListClasses). */
  classes?: ServiceClass[];
  /** How long close() lets running calls (a long verify) finish before cutting them; default 5000. */
  shutdownGraceMs?: number;
}

export class ApiServer {
  /** The attachments the CSI node services recorded here (read by telemetry). */
  readonly attachments: AttachmentStore;
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
  private readonly logger: Logger;
  private readonly shutdownGraceMs: number;
  private port = 0;
  private closing = false;

  constructor(options: ApiServerOptions) {
    const { engine, node, cluster } = options;
    this.logger = options.logger;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 5000;
    const rpc: RpcContext = { logger: this.logger, calls: options.calls ?? new ApiCallStats() };
    const attachments = new AttachmentStore(node.dataDir, this.logger);
    this.attachments = attachments;
    const clusterVolumes = options.clusterVolumes ?? localVolumesOnly(engine);
    this.server.addService(serviceDefinition('VolumeService'), volumeService(engine, attachments, clusterVolumes, options.volumeStats ?? NO_STATS, rpc));
    this.server.addService(serviceDefinition('ReplicaService'), replicaService(clusterVolumes, rpc));
    this.server.addService(serviceDefinition('SnapshotService'), snapshotService(clusterVolumes, rpc));
    this.server.addService(serviceDefinition('PoolService'), poolService(engine, options.classes ?? [], rpc));
    this.server.addService(serviceDefinition('NodeService'), nodeService(node, cluster, () => this.port, rpc));
    this.server.addService(serviceDefinition('AttachmentService'), attachmentService(attachments, clusterVolumes, options.claims, rpc));
  }

  /** Bound and not closing. */
  get listening(): boolean {
    return this.port !== 0 && !this.closing;
  }

  /** Binds and serves; resolves with the bound port (pass 0 for any free one). */
  listen(host: string, port: number): Promise<number> {
    const address = hostPort(host, port);
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => {
        if (error) return reject(error);
        this.port = boundPort;
        this.logger.info({ host, port: boundPort }, 'control API listening');
        resolve(boundPort);
      });
    });
  }

  /** Stops accepting calls, lets running ones finish for up to shutdownGraceMs, then cuts them. */
  close(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.server.forceShutdown(), this.shutdownGraceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
