// The node's part in the cluster's replicated volumes. It watches the store's volume records and
// primary leases, and membership; runs a brain (volume-runner.ts) for every volume this node holds
// a copy of; routes each replicated volume's I/O to its primary, wherever that is (the replication
// layer of the volume's stack, or a forwarder for a volume this node holds no copy of); and keeps
// the store's records of the volumes it creates and deletes.

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger';
import { primaryExportName } from '../nbd-exports';
import { AbsenceLog, AbsenceTrackingLayer, type Absence } from '../replication/absence-log';
import { ActivityLog } from '../replication/activity-log';
import { PeerActivity } from '../replication/peer-activity';
import type { DirtyMap } from '../replication/dirty-map';
import type { ForwarderConnection } from '../replication/forwarder-fence';
import { ForwardingDevice, VolumeGoneError, type RouteTarget } from '../replication/forwarding-device';
import { connectNbdRouteFirstKnown } from '../replication/nbd-route-target';
import { COPY_DURABLE_TIMEOUT_MS } from '../replication/remote-replica';
import type { ReplicaStatus, ReplicatedDevice } from '../replication/replicated-device';
import { ReplicationLayer, type CopyOperation } from '../replication/replication-layer';
import { failedPrecondition } from '../errors';
import type { BlockDevice, VolumeLayer } from '../volume/block-device';
import type { EpochFence } from '../volume/epoch-fence';
import type { ClusterStore, KeyValue, StoreWatch, WatchEvent } from './cluster-store';
import { ATTACH_CLAIMS, attachClaimKey, claimHolder } from './attach-claims';
import { listNodes, type ClusterNode } from './membership';
import type { NodeCandidate } from './placement';
import { DEFAULT_BRAIN_CONFIG, type BrainConfig } from './volume-brain-state';
import { leaseAsRead, leftoverPrefix, parsePrimaryLease, parseVolumeRecord, volumeKey, volumeLeaseKey, VOLUMES, type VolumeRecord } from './volume-record';
import { VolumeRunner } from './volume-runner';

const LEASES = 'volume-leases/';
/** After a watch ended on its own (history compacted), the controller reads everything again after this. */
const REWATCH_MS = 1000;
/** A read of a new volume's primary lease that the store did not answer is tried again after this. */
const LEASE_READ_RETRY_MS = 1000;
/**
 * The nodes are read again this often besides on every change the watch reports: a node's address
 * and ports change when it restarts, and a watch that missed that (etcd restarted) would leave
 * replication and forwarding knocking at the old ones.
 */
const NODES_REFRESH_MS = 3000;
/** A control operation asked of the primary while it is taking over (a new volume's first seconds) waits this long for it. */
const CONTROL_WAIT_MS = 10_000;
/**
 * A forwarded request may wait this long for the primary's answer before the forwarder gives up on
 * the connection and sends it again on a new one. Longer than a primary's own legitimate waits (a
 * copy's 5 s request timeout, then its removal from the in-sync set in the store): a shorter one
 * only resent requests the primary was still working on. A primary that hangs is left sooner, as
 * soon as the store names another (ForwardingDevice.primaryMoved).
 */
const FORWARD_REQUEST_TIMEOUT_MS = 15_000;
/** A forwarded FLUSH or FUA request may take as long as the primary's copies may, plus the above, while the primary answers otherwise. */
export const FORWARD_DURABLE_TIMEOUT_MS = COPY_DURABLE_TIMEOUT_MS + FORWARD_REQUEST_TIMEOUT_MS;
/** A forwarder's handshake with a primary: a node that does not answer is given up on, and others asked. */
const FORWARD_CONNECT_TIMEOUT_MS = 5000;

export interface ControllerOptions {
  self: string;
  /** Raises this node's copy's epoch, durably (LocalEngine.raiseEpoch); a no-op if it is there already. */
  raiseLocalEpoch(volume: string, epoch: number): Promise<void>;
  /** This node's copy's epoch fence: a primary's own writes to its copy pass it too (epoch-fence.ts). */
  localFence(volume: string): EpochFence;
  /** Whether this node holds a copy of the volume. */
  hasCopy(volume: string): boolean;
  /** Applies a control operation to another node's copy (through its control API). */
  controlCopy(node: string, volume: string, operation: CopyOperation, epoch: number): Promise<void>;
  /** Settles on another node's copy the control operations sent it that got no answer (control-ledger.ts). */
  settleCopyControls(node: string, volume: string, ids: string[]): Promise<void>;
  /** The names of the snapshots node's copy holds (this node's too). */
  copySnapshotNames(node: string, volume: string): Promise<string[]>;
  /** Has another node make its copy of a volume (a replacement). */
  createCopy(node: string, volume: string, sizeBytes: number, poolClass: string): Promise<void>;
  /** Has node's copy log what copy `absent` misses (absence), or stop (null) (through its API). */
  trackAbsence(node: string, volume: string, epoch: number, absent: string, absence: Absence | null): Promise<void>;
  /** Where another node's copy may differ from the others, from its activity log (through its API). */
  activityOf(node: string, volume: string): Promise<{ epoch: number; map: DirtyMap }>;
  /** Has node's copy record this primary's activity log (through its API); refused if its epoch is above the given one. */
  trackActivity(node: string, volume: string, epoch: number, revision: number, extents: readonly number[]): Promise<void>;
  /** The checksum of each block of the range on node's copy (this node's included); refused unless that copy is at the epoch. */
  blockChecksums(node: string, volume: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array>;
  /** Where each copy's absence and activity logs live (a file of each per volume). */
  absenceDir: string;
  brain?: Partial<BrainConfig>;
  logger: Logger;
}

/** A replicated volume as this node sees it: its record, and the primary's view of its copies when this node serves. */
export interface ReplicationView {
  record: VolumeRecord;
  /** Only on the primary. */
  replicas?: ReplicaStatus[];
}

export class VolumeController {
  private readonly records = new Map<string, VolumeRecord>();
  /** The forwarders of each volume, told when its record names another primary or epoch. */
  private readonly forwarders = new Map<string, Set<ForwardingDevice>>();
  /** The forwarder each volume's clients here share, for a volume this node holds no copy of (remoteExport). */
  private readonly remoteForwarders = new Map<string, { forwarder: ForwardingDevice; createId: string | undefined; users: number }>();
  /** The node each route target route() found reaches (this node for its own primary device). */
  private readonly targetNodes = new WeakMap<RouteTarget, string>();
  /** The store revision of each record. */
  private readonly revisions = new Map<string, number>();
  /** The revision each record went at, as far as known: a replayed event older than that is not applied. */
  private readonly deletedAt = new Map<string, number>();
  private readonly runners = new Map<string, VolumeRunner>();
  private readonly layers = new Map<string, ReplicationLayer>();
  private readonly logs = new Map<string, AbsenceLog>();
  private readonly activity = new Map<string, ActivityLog>();
  private readonly peerActivities = new Map<string, PeerActivity>();
  private nodes = new Map<string, ClusterNode>();
  private nodeLease: string | null = null;
  private watches: StoreWatch[] = [];
  private nodesRefresh: Promise<void> | undefined;
  private nodesStale = false;
  private nodesTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The watches ended and are to be started again (rewatch). */
  private rewatching = false;
  /** Counts rewatches: a start under way when one happens keeps none of its watches. */
  private generation = 0;
  private readonly config: BrainConfig;
  private storeOrUndefined: ClusterStore | undefined;
  /** Whether the first read of the store is done. */
  private started = false;
  /** The revision of the last lease event heard, per volume. */
  private readonly leaseEvents = new Map<string, number>();
  /** Per volume, the node its attach claim names (attach-claims.ts). */
  private claims = new Map<string, string>();

  private constructor(private readonly options: ControllerOptions) {
    this.config = { ...DEFAULT_BRAIN_CONFIG, ...options.brain };
  }

  /** Builds the controller; start() reads the store. Layers may be asked for before (the engine opens first). */
  static create(options: ControllerOptions): VolumeController {
    return new VolumeController(options);
  }

  /**
   * The replication layer of a volume's stack (the daemon's stackFor), and the layer above its local
   * copy that every change to the copy passes (from this node's primary or another's): it logs what
   * absent copies miss.
   */
  layerFor(volume: string, replica: VolumeLayer): { layer: ReplicationLayer; copy: VolumeLayer } {
    const log = AbsenceLog.load(path.join(this.options.absenceDir, `${volume}.json`), this.options.logger);
    this.logs.set(volume, log);
    const copy = new AbsenceTrackingLayer(replica, log);
    const layer = new ReplicationLayer(volume, copy);
    this.layers.set(volume, layer);
    const record = this.records.get(volume);
    if (record) layer.replicate(this.forwarder(volume, record.sizeBytes), this.controlOf(volume));
    return { layer, copy };
  }

  /** The absence log of this node's copy of the volume. */
  absenceLog(volume: string): AbsenceLog | undefined {
    return this.logs.get(volume);
  }

  /** The activity log of this node's copy of the volume (read from its file when first asked for). */
  activityLog(volume: string): ActivityLog | undefined {
    if (!this.layers.has(volume)) return undefined;
    let log = this.activity.get(volume);
    if (!log) this.activity.set(volume, (log = ActivityLog.load(path.join(this.options.absenceDir, `${volume}.activity`))));
    return log;
  }

  /** This node's copy's record of its primary's activity log (read from its file when first asked for). */
  peerActivity(volume: string): PeerActivity | undefined {
    if (!this.layers.has(volume)) return undefined;
    let record = this.peerActivities.get(volume);
    if (!record) this.peerActivities.set(volume, (record = PeerActivity.load(path.join(this.options.absenceDir, `${volume}.peer-activity`))));
    return record;
  }

  /** Reads the records, then follows them. Before it resolves, no replicated volume's copy is served as if it were local. */
  async start(store: ClusterStore): Promise<void> {
    this.storeOrUndefined = store;
    const generation = this.generation;
    const revision = await this.readAll(generation);
    this.started = true;
    const replay = { fromRevision: revision + 1, onError: (err: Error) => this.rewatch(err) };
    // A start abandoned for a newer one (rewatch) may still hear events until its watches close: not
    // its to apply. The newer start's lists and its watches' replay bring them in order; applied
    // too, an older start's delete could come before a newer list holding the record, and be undone.
    const current = () => generation === this.generation;
    const watched = await Promise.allSettled([
      store.watch(VOLUMES, replay, (e) => current() && this.onRecordEvent(e)),
      store.watch(LEASES, replay, (e) => current() && this.onLeaseEvent(e)),
      store.watch('alive/', replay, () => this.refreshNodes()),
      store.watch('nodes/', replay, () => this.refreshNodes()),
      store.watch(ATTACH_CLAIMS, replay, (e) => current() && this.onClaimEvent(e)),
    ]);
    const started = watched.flatMap((w) => (w.status === 'fulfilled' ? [w.value] : []));
    const failed = watched.find((w) => w.status === 'rejected');
    // Failed, closed, or a watch ended meanwhile (rewatch: a newer start follows): not this start's to keep.
    if (failed || this.closed || generation !== this.generation) {
      await Promise.allSettled(started.map((w) => w.close()));
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return;
    }
    this.watches = started;
    this.nodesTimer ??= setInterval(() => this.refreshNodes(), NODES_REFRESH_MS).unref();
  }

  private get store(): ClusterStore {
    if (!this.storeOrUndefined) throw new Error('the volume controller has not started');
    return this.storeOrUndefined;
  }

  /** This node's membership lease (null while it has none): promotions are put on it. */
  setNodeLease(leaseId: string | null): void {
    this.nodeLease = leaseId;
    for (const runner of this.runners.values()) runner.dispatch({ type: 'node-lease', leaseId });
  }

  /** The record of a replicated volume, if it is one. */
  record(volume: string): VolumeRecord | undefined {
    return this.records.get(volume);
  }

  recordNames(): string[] {
    return [...this.records.keys()];
  }

  /** The volumes this node serves as primary, with what it knows of their copies. */
  served(): ReplicationView[] {
    return [...this.runners.values()].flatMap((runner) => {
      const replicas = runner.replicaStatus();
      return replicas && runner.record ? [{ record: runner.record, replicas }] : [];
    });
  }

  view(volume: string): ReplicationView | undefined {
    const record = this.records.get(volume);
    return record && { record, replicas: this.runners.get(volume)?.replicaStatus() };
  }

  /** Every node as placement sees it. */
  candidates(): NodeCandidate[] {
    return [...this.nodes.values()].map((n) => ({ id: n.id, up: n.state === 'up', zone: n.zone, pools: n.pools }));
  }

  node(id: string): ClusterNode | undefined {
    return this.nodes.get(id);
  }

  /** Reads the nodes now (a create places against the freshest view). */
  async readNodes(): Promise<void> {
    this.applyNodes(await listNodes(this.store, this.malformedNode));
  }

  /**
   * This node's copy of a volume about to be recorded (a create in progress): from now on it is
   * served only through its primary, so that nothing is written to it directly.
   */
  async adopt(volume: string, sizeBytes: number): Promise<void> {
    // The copy's absence log is its layer's: also for a retired copy reused by a replacement (its
    // drop had not happened yet), whose log forget() let go of; the primary tells it of absences again.
    const local = this.layers.get(volume)?.local;
    if (local instanceof AbsenceTrackingLayer) this.logs.set(volume, local.log);
    await this.logs.get(volume)?.clear(); // a new copy: what an earlier life of it logged is of no use
    this.layers.get(volume)?.replicate(this.forwarder(volume, sizeBytes), this.controlOf(volume));
    // A replacement's copy, made after its record named this node: it runs the volume's brain now.
    const revision = this.revisions.get(volume);
    const record = this.records.get(volume);
    if (record && revision !== undefined) this.onRecord(volume, { key: volumeKey(volume), value: JSON.stringify(record), modRevision: revision, createRevision: 0, version: 0 });
  }

  /** This node's copy is being deleted: it stops serving it, whether or not it saw the record go. */
  forget(volume: string): void {
    this.runners.get(volume)?.close();
    this.runners.delete(volume);
    this.layers.get(volume)?.retire();
    const logs = [this.logs.get(volume), this.activityLog(volume), this.peerActivity(volume)];
    this.logs.delete(volume);
    this.activity.delete(volume);
    this.peerActivities.delete(volume);
    for (const log of logs) log?.remove().catch((err: unknown) => this.options.logger.warn({ volume, err }, 'could not remove a replication log'));
  }

  /** This node's copy below the stack, for the control operations the primary applies to it. */
  localCopy(volume: string): VolumeLayer | undefined {
    return this.layers.get(volume)?.local;
  }

  /** This node's copy serves a volume of the cluster through its primary, record heard of or not (a create adopted it). */
  replicating(volume: string): boolean {
    return this.layers.get(volume)?.replicating === true;
  }

  /** This node's copy of a volume deleted from the cluster, not dropped yet: not to be opened. */
  retired(volume: string): boolean {
    return this.layers.get(volume)?.retired === true;
  }

  /**
   * This node's copy of a volume whose record no longer names this node (replaced elsewhere), not
   * dropped yet: kept while this node's clients use it, its I/O going to the primary.
   */
  replaced(volume: string): boolean {
    const record = this.records.get(volume);
    return record !== undefined && this.options.hasCopy(volume) && !record.replicas.some((r) => r.node === this.options.self);
  }

  /**
   * The snapshot the volume's record marks as not settled (VolumeRecord.snapshotting): read from the
   * store now when this node's view has one (its watch may not have brought the clear yet, a moment
   * after the snapshot was acknowledged); the view's, if the store cannot be read.
   */
  async snapshottingNow(volume: string): Promise<string | undefined> {
    const seen = this.records.get(volume)?.snapshotting;
    if (seen === undefined) return undefined;
    return this.store.get(volumeKey(volume)).then(
      (kv) => kv && parseVolumeRecord(kv.value)?.snapshotting,
      () => seen,
    );
  }

  /** The node the volume's attach claim names, as this node last read the store. */
  attachedNode(volume: string): string | undefined {
    return this.claims.get(volume);
  }

  /** The node the volume's attach claim names, read from the store now (undefined: none). */
  async attachedNodeNow(volume: string): Promise<string | undefined> {
    const kv = await this.store.get(attachClaimKey(volume));
    return kv && claimHolder(kv.value);
  }

  /**
   * The device behind VOL~primary: the primary's replication, only while this node serves the volume
   * (at an epoch above afterEpoch, if given). With createId, only if the volume it serves was made
   * by that create: a forwarder whose view of the store is stale (its node is cut from etcd) may ask
   * for a volume deleted since, whose name this node now serves another under.
   */
  primaryExport(volume: string, afterEpoch?: number, createId?: string): BlockDevice | undefined {
    if (createId !== undefined && this.records.get(volume)?.createId !== createId) return undefined;
    return this.runners.get(volume)?.primaryDevice(afterEpoch);
  }

  /**
   * The forwarder for a replicated volume this node holds no copy of, or only a retired one that is
   * being dropped (replaced elsewhere): attach is local on every node. One for all the volume's
   * clients here, as a copy's layer has: their requests reach the primary down one ordered stream.
   * With one each (each fenced apart at the primary), a write of a client gone could still be read
   * there after a newer one of the client that took its place, and land over it. release() once
   * per call; the last closes it.
   */
  remoteExport(volume: string): { forwarder: ForwardingDevice; release: () => void } | undefined {
    const record = this.records.get(volume);
    if (!record || (this.options.hasCopy(volume) && !this.retired(volume))) return undefined;
    let shared = this.remoteForwarders.get(volume);
    // One made for an earlier volume of the name goes on for its clients alone (it refuses the new one).
    if (!shared || shared.createId !== record.createId) {
      shared = { forwarder: this.forwarder(volume, record.sizeBytes), createId: record.createId, users: 0 };
      this.remoteForwarders.set(volume, shared);
    }
    const entry = shared;
    entry.users++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--entry.users > 0) return;
      entry.forwarder.close();
      if (this.remoteForwarders.get(volume) === entry) this.remoteForwarders.delete(volume);
    };
    return { forwarder: entry.forwarder, release };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.nodesTimer);
    await Promise.allSettled(this.watches.map((w) => w.close()));
    for (const runner of this.runners.values()) runner.close();
    this.runners.clear();
  }

  // ---- the store ----

  private async readAll(generation: number): Promise<number> {
    const store = this.store;
    const revision = await store.revision();
    const leftoversHere = leftoverPrefix(this.options.self);
    const [records, leases, nodes, claims, leftovers] = await Promise.all([store.list(VOLUMES), store.list(LEASES), listNodes(store, this.malformedNode), store.list(ATTACH_CLAIMS), store.list(leftoversHere)]);
    this.applyNodes(nodes);
    if (generation === this.generation) this.claims = new Map(claims.flatMap((kv) => this.claimOf(kv.key, kv.value)));
    for (const kv of records) this.onRecord(kv.key.slice(VOLUMES.length), kv);
    for (const kv of leases) this.onLeaseEvent({ type: 'put', key: kv.key, value: kv.value, modRevision: kv.modRevision });
    // A volume whose record is gone while this node was away: nothing is known of it but its copy.
    for (const name of [...this.records.keys()]) {
      if (records.some((kv) => kv.key === volumeKey(name))) continue;
      this.deletedAt.set(name, revision); // at `revision` or later: the lists were read after it
      this.onRecord(name, undefined);
    }
    // A copy of a volume deleted while this node was down: nothing of it is served (its data is no
    // volume's any more) until leftovers.ts drops it. Without a record, its layer would pass through.
    // Only at the first reading: later, a create of the name may have made a new copy since the list was read.
    for (const kv of this.started ? [] : leftovers) {
      const name = kv.key.slice(leftoversHere.length);
      if (!this.records.has(name)) this.layers.get(name)?.retire();
    }
    // Absent as of the lists, which were read at `revision` or later.
    for (const runner of this.runners.values()) if (!leases.some((kv) => kv.key === volumeLeaseKey(runner.name))) runner.dispatch({ type: 'primary-lease', lease: null, modRevision: revision });
    return revision;
  }

  private rewatch(err: Error): void {
    // Every watch may end at once (they share etcd's stream): one reading again is enough.
    if (this.closed || this.rewatching) return;
    this.rewatching = true;
    this.generation++;
    this.options.logger.warn({ err }, 'a cluster watch ended; reading the volumes again');
    // Taken out first: a start that fails leads here again, and must not close these a second time.
    const ended = this.watches;
    this.watches = [];
    void Promise.allSettled(ended.map((w) => w.close())).then(() =>
      setTimeout(() => {
        this.rewatching = false;
        if (this.closed) return; // closed meanwhile: a start now would make runners no one closes
        void this.start(this.store).catch((e: unknown) => this.rewatch(e as Error));
      }, REWATCH_MS).unref(),
    );
  }

  private onClaimEvent(event: WatchEvent): void {
    const volume = event.key.slice(ATTACH_CLAIMS.length);
    this.claims.delete(volume);
    for (const [, node] of event.type === 'put' ? this.claimOf(event.key, event.value as string) : []) this.claims.set(volume, node);
  }

  /** The claim a key holds, as [volume, node]; none (logged) for a value no weftd writes. */
  private claimOf(key: string, value: string): [string, string][] {
    const node = claimHolder(value);
    if (node === undefined) this.options.logger.warn({ key, value }, 'an attach claim that names no node; ignored');
    return node === undefined ? [] : [[key.slice(ATTACH_CLAIMS.length), node]];
  }

  private onRecordEvent(event: WatchEvent): void {
    const name = event.key.slice(VOLUMES.length);
    // After a (re)start the watch replays from the revision read before the lists: an event older
    // than the record listed is not applied over it (a replayed delete would forget the copy of a
    // volume made again since, its logs with it).
    if (event.modRevision <= Math.max(this.revisions.get(name) ?? 0, this.deletedAt.get(name) ?? 0)) return;
    this.deletedAt.delete(name);
    if (event.type === 'delete') this.deletedAt.set(name, event.modRevision);
    if (event.type === 'delete') this.onRecord(name, undefined);
    else this.onRecord(name, { key: event.key, value: event.value as string, modRevision: event.modRevision, createRevision: 0, version: 0 });
  }

  private onRecord(name: string, kv: KeyValue | undefined): void {
    const runner = this.runners.get(name);
    if (!kv) {
      this.revisions.delete(name);
      if (!this.records.delete(name)) return;
      // Their connections to the old primary go (it would count this node among the volume's users,
      // should a volume of the name be made there again); their next request finds it gone.
      for (const forwarder of this.forwarders.get(name) ?? []) forwarder.primaryMoved(undefined, 'the volume was deleted');
      this.forget(name);
      this.options.logger.info({ volume: name }, 'replicated volume deleted');
      return;
    }
    const record = parseVolumeRecord(kv.value);
    if (!record) return this.malformed('volume record', kv.key, kv.modRevision);
    const previous = this.records.get(name);
    const known = previous !== undefined;
    this.records.set(name, record);
    if (previous && (previous.primary !== record.primary || previous.epoch !== record.epoch)) {
      const atNewPrimary = (target: RouteTarget) => this.targetNodes.get(target) === record.primary;
      for (const forwarder of this.forwarders.get(name) ?? []) forwarder.primaryMoved(atNewPrimary);
    }
    this.revisions.set(name, kv.modRevision);
    // Not to a retired copy (being dropped): it is an older volume's, and its clients must not reach
    // this one, nor new clients its data (they are forwarded: remoteExport). A reuse adopts it.
    const layer = this.layers.get(name);
    if (!known && !layer?.retired) layer?.replicate(this.forwarder(name, record.sizeBytes), this.controlOf(name));
    const holds = record.replicas.some((r) => r.node === this.options.self) && this.options.hasCopy(name);
    if (holds && !runner) this.startRunner(name);
    if (!holds && runner) {
      runner.close();
      this.runners.delete(name);
    }
    this.runners.get(name)?.dispatch({ type: 'record', record, modRevision: kv.modRevision });
  }

  private startRunner(name: string): void {
    if (this.closed) return; // a start under way when the controller closed: no runner outlives it
    const runner = new VolumeRunner(name, {
      self: this.options.self,
      store: this.store,
      raiseLocalEpoch: this.options.raiseLocalEpoch,
      localFence: this.options.localFence,
      localCopy: (volume) => this.layers.get(volume)?.local,
      nodeAddress: (node) => {
        const n = this.nodes.get(node);
        return n && { host: n.address, nbdPort: n.nbdPort };
      },
      controlCopy: this.options.controlCopy,
      settleCopyControls: this.options.settleCopyControls,
      copySnapshotNames: this.options.copySnapshotNames,
      createCopy: this.options.createCopy,
      absenceLog: (volume) => this.logs.get(volume),
      activityLog: (volume) => this.activityLog(volume),
      activityOf: this.options.activityOf,
      peerActivity: (volume) => this.peerActivity(volume),
      trackActivity: this.options.trackActivity,
      blockChecksums: this.options.blockChecksums,
      trackAbsence: this.options.trackAbsence,
      config: this.config,
      logger: this.options.logger,
    });
    this.runners.set(name, runner);
    runner.dispatch({ type: 'nodes', nodes: this.candidates() });
    if (this.nodeLease) runner.dispatch({ type: 'node-lease', leaseId: this.nodeLease });
    if (this.started) void this.readLease(runner);
  }

  /**
   * A volume seen after start: its primary lease as it is now, unless the watch told of it
   * meanwhile. Tried again until the store answers: without it the volume's brain does not know
   * that no lease exists, and no copy would take it (no event comes for a lease that is not there).
   */
  private async readLease(runner: VolumeRunner): Promise<void> {
    const heardBefore = this.leaseEvents.get(runner.name);
    while (!this.closed && this.runners.get(runner.name) === runner) {
      try {
        const { kv, revision } = await this.store.read(volumeLeaseKey(runner.name));
        if (this.leaseEvents.get(runner.name) !== heardBefore) return;
        const event = leaseAsRead(kv, revision);
        if (!event) return this.malformed('primary lease', volumeLeaseKey(runner.name), kv?.modRevision ?? 0);
        runner.dispatch(event);
        return;
      } catch (err) {
        if (this.leaseEvents.get(runner.name) !== heardBefore) return;
        this.options.logger.warn({ volume: runner.name, err }, 'could not read the primary lease; trying again');
        await sleep(LEASE_READ_RETRY_MS);
      }
    }
  }

  private onLeaseEvent(event: WatchEvent): void {
    const name = event.key.slice(LEASES.length);
    const lease = event.type === 'put' ? parsePrimaryLease(event.value as string) : null;
    if (lease === undefined) return this.malformed('primary lease', event.key, event.modRevision);
    this.leaseEvents.set(name, event.modRevision);
    this.runners.get(name)?.dispatch({ type: 'primary-lease', lease, modRevision: event.modRevision });
  }

  private readonly malformedNode = (kv: KeyValue) => this.malformed('node registration', kv.key, kv.modRevision);

  /** A value in the store that is not what its key should hold: left as it is, and what was known before kept. */
  private malformed(what: string, key: string, modRevision: number): void {
    this.options.logger.error({ key, modRevision }, `the cluster store holds a malformed ${what}: ignored (delete or correct the key)`);
  }

  /** Membership changed: read the nodes again (one read at a time, and one more if it changed meanwhile). */
  private refreshNodes(): void {
    if (this.nodesRefresh) {
      this.nodesStale = true;
      return;
    }
    this.nodesRefresh = this.readNodes()
      .catch((err: unknown) => this.options.logger.warn({ err }, 'could not read the cluster nodes'))
      .finally(() => {
        this.nodesRefresh = undefined;
        if (this.nodesStale && !this.closed) {
          this.nodesStale = false;
          this.refreshNodes();
        }
      });
  }

  private applyNodes(nodes: ClusterNode[]): void {
    this.nodes = new Map(nodes.map((n) => [n.id, n]));
    const candidates = this.candidates();
    for (const runner of this.runners.values()) runner.dispatch({ type: 'nodes', nodes: candidates });
  }

  // ---- routing ----

  /** A control operation of the volume, run by this node's brain (refused unless it serves as primary). */
  private controlOf(name: string): (operation: CopyOperation) => Promise<void> {
    return async (operation) => (await this.servingRunner(name)).control(operation);
  }

  /** The replication of a volume this node serves as primary (refused if it does not). */
  async replication(name: string): Promise<ReplicatedDevice> {
    const device = (await this.servingRunner(name)).replication();
    if (!device) throw failedPrecondition(`node ${this.options.self} does not serve volume ${name} as primary (the primary is ${this.records.get(name)?.primary ?? 'unknown'})`);
    return device;
  }

  /** The brain of a volume this node holds, once it serves if it is on its way to. */
  private async servingRunner(name: string): Promise<VolumeRunner> {
    const runner = this.runners.get(name);
    if (!runner) throw failedPrecondition(`node ${this.options.self} holds no serving copy of volume ${name}`);
    await runner.untilServing(CONTROL_WAIT_MS);
    return runner;
  }

  /** Sends a volume's I/O to its primary: this node's own replication while it serves, else the primary's node. */
  private forwarder(name: string, sizeBytes: number): ForwardingDevice {
    // Its connections to the primary are fenced by generation there (replication/forwarder-fence.ts).
    const connections: ForwarderConnection = { forwarder: randomBytes(8).toString('hex'), generation: 0 };
    const record = this.records.get(name);
    const incarnation: Incarnation = record ? { pinned: { createId: record.createId } } : {};
    const forwarders = this.forwarders.get(name) ?? new Set<ForwardingDevice>();
    this.forwarders.set(name, forwarders);
    const forwarder: ForwardingDevice = new ForwardingDevice({
      volume: name,
      sizeBytes: () => this.records.get(name)?.sizeBytes ?? sizeBytes,
      route: () => this.route(name, connections, incarnation),
      onClose: () => {
        forwarders.delete(forwarder);
        if (forwarders.size === 0 && this.forwarders.get(name) === forwarders) this.forwarders.delete(name);
      },
      logger: this.options.logger,
    });
    forwarders.add(forwarder);
    return forwarder;
  }

  /**
   * Where the volume's primary serves now: where the store's record says. When that node does not
   * serve it (it was fenced by the copies, and refuses the export), or the record names this node,
   * which no longer serves, this node's view of the store is stale (it is cut from etcd, or about
   * to hear of the promotion): the other copies' nodes are asked for the primary at an epoch above
   * the record's, the copy promoted since. Not an older primary that has not yet learnt that it is
   * fenced: its reads would be stale.
   */
  private async route(name: string, connections: ForwarderConnection, incarnation: Incarnation): Promise<RouteTarget> {
    const record = this.records.get(name);
    checkIncarnation(name, record, incarnation);
    const local = this.runners.get(name)?.primaryDevice();
    if (local) {
      this.targetNodes.set(local, this.options.self);
      return local;
    }
    if (!record) throw new Error(`volume ${name} is not in the cluster`);
    let failure: unknown = new Error(`volume ${name} has no primary serving yet (epoch ${record.epoch}, as this node last read the store)`);
    const primary = record.primary === this.options.self ? undefined : this.nodes.get(record.primary);
    if (primary) {
      try {
        return await this.connectPrimary(name, primary, connections, record);
      } catch (err) {
        failure = err;
      }
    }
    // Only a copy in sync as this node last read the store can have been promoted since: not the
    // old primary marked out by a promotion this node has heard of (it may hang; asking it would
    // take the handshake's timeout).
    const others = record.replicas
      .filter((r) => r.state === 'in-sync')
      .map((r) => this.nodes.get(r.node))
      .filter((n): n is ClusterNode => n !== undefined && n.id !== this.options.self && n.id !== record.primary);
    return firstConnected(others.map((other) => this.connectPrimary(name, other, connections, record, record.epoch)), failure);
  }

  /** A new connection of the forwarder (the next generation), to the volume of record's create only. */
  private async connectPrimary(name: string, node: ClusterNode, connections: ForwarderConnection, record: VolumeRecord, afterEpoch?: number): Promise<RouteTarget> {
    const from = { forwarder: connections.forwarder, generation: ++connections.generation };
    const request = { afterEpoch, createId: record.createId, from };
    // A primary of an older version knows no ~by= (and fences by claims not at all): the name without it.
    const names = [primaryExportName(name, { ...request, by: this.options.self }), primaryExportName(name, request)];
    const target = await connectNbdRouteFirstKnown(
      { host: node.address, port: node.nbdPort, timeoutMs: FORWARD_REQUEST_TIMEOUT_MS, durableTimeoutMs: FORWARD_DURABLE_TIMEOUT_MS, connectTimeoutMs: FORWARD_CONNECT_TIMEOUT_MS },
      names,
    );
    this.targetNodes.set(target, node.id);
    return target;
  }
}

/**
 * Which volume of the name a forwarder serves: the record's createId, pinned when the forwarder is
 * made, or the first time route() sees the record (a forwarder made during a create sees it later).
 */
interface Incarnation {
  pinned?: { createId: string | undefined };
}

/**
 * Throws VolumeGoneError once the volume the forwarder first found is gone, or the name now holds
 * another (made since, with a createId of its own): its clients' requests must not reach that one.
 */
function checkIncarnation(name: string, record: VolumeRecord | undefined, incarnation: Incarnation): void {
  const pinned = incarnation.pinned;
  if (!pinned) {
    if (record) incarnation.pinned = { createId: record.createId };
    return;
  }
  if (!record) throw new VolumeGoneError(`volume ${name} was deleted from the cluster`);
  if (record.createId !== pinned.createId) throw new VolumeGoneError(`volume ${name} was deleted from the cluster (a volume made since under its name is another one)`);
}

/**
 * The first of the attempts to connect, without waiting for the others (a node behind a partition
 * takes the handshake's timeout to fail); the others are closed if they connect. Rejects with
 * `otherwise` when none connects.
 */
async function firstConnected(attempts: Promise<RouteTarget>[], otherwise: unknown): Promise<RouteTarget> {
  let winner: RouteTarget;
  try {
    winner = await Promise.any(attempts);
  } catch {
    throw otherwise;
  }
  for (const attempt of attempts) attempt.then((target) => target !== winner && target.close(), () => undefined);
  return winner;
}
