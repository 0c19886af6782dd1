// Replicated volumes as the control API makes and drops them. Any node may be asked: it places
// the copies (placement.ts), has every chosen node make its own (ReplicaService.CreateCopy), and
// only then records the volume in the cluster store, by a transaction that succeeds only if no
// record of that name exists. The create is written down first (create-intent.ts): whatever fails
// on the way gives it up and its copies with it, so a refused create leaves nothing behind, and one
// cut short by its node's death is given up by the next create of the name or when that node is
// back. A clone is made the same way, on nodes that hold the snapshot, each copy cloned from the
// node's own copy of it. A delete removes the record first (every node then
// stops serving the volume), then the copies; the volume's snapshots stay on their nodes, which a
// kept-snapshots key names (kept-snapshots.ts).

import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterStore, KeyValue } from '../cluster/cluster-store';
import { attachClaimKey, claimHolder } from '../cluster/attach-claims';
import { createKey, CreateOutcomeUnknownError } from '../cluster/create-key';
import { BeginOutcomeUnknownError, beginCreate, createUnderWay, giveUpAbandonedCreates, giveUpCreate, markCopy, recordedIntent, underWay, unmarkCopy, type CreatingNode, type HeldIntent } from '../cluster/create-intent';
import { addMissedDeletes, everyMissed, missedDeletes, missedDeletesKey, missedDeletesPrefix, parseMissed } from '../cluster/missed-deletes';
import { keptSnapshots, keptSnapshotsKey, keptSnapshotsPrefix, leaveKeptSnapshots, markKeptDeleted, parseKept, type KeptSnapshots } from '../cluster/kept-snapshots';
import { settleLostCreate } from '../cluster/lost-create';
import { place } from '../cluster/placement';
import type { VolumeController } from '../cluster/volume-controller';
import { leftoverKey, malformedRecord, parseLeftover, parseVolumeRecord, volumeKey, volumeLeaseKey, type Leftover, type VolumeRecord } from '../cluster/volume-record';
import { alreadyExists, failedPrecondition, InUseError, invalidArgument, NoAnswerError, notFound, WeftError, type ErrorKind } from '../errors';
import type { Logger } from '../logger';
import type { LocalEngine } from '../volume/local-engine';
import { BLOCK_BYTES, wholeBlocks } from '../store/block-size';
import { validateName } from '../volume/names';
import { MAX_REPLICAS } from './validate';
import { KeyedTurns } from '../keyed-turns';
import { hostPort } from '../listen';
import type { CloneVolumeRequest, CreateVolumeRequest, ReplicaInfo, SnapshotInfo, VerifyReport, VolumeEngine, VolumeInfo } from '../volume/types';
import type { Absence } from '../replication/absence-log';
import type { DirtyMap } from '../replication/dirty-map';
import type { CopyOperation } from '../replication/replication-layer';
import { verifyReplicas } from '../replication/replica-verify';
import { ControlLedger } from '../replication/control-ledger';
import { applyTo } from '../cluster/volume-runner';
import { WeftApiError, WeftClient } from './client';
import { NodeClients, withClient } from './node-clients';
import type { CopyCreate, SnapshotRef } from './messages';

/**
 * A call to another node's API that has not been answered within this fails: a node that accepts
 * connections and never answers (a port reused by another process after a restart) must not hold
 * up a resync, a failover's bookkeeping or a user's command for good.
 */
const NODE_CALL_DEADLINE_MS = 30_000;
/** A call a client's write waits for (activity notices): as long as a replica may take to answer a write. */
const FAST_NODE_CALL_DEADLINE_MS = 5000;
/** The longest range one BlockChecksums call answers for (256 KiB of checksums). */
const MAX_CHECKSUM_RANGE_BYTES = 256 * 1024 * 1024;
/** How long a copy's delete waits for the replication connections to it to close. */
const DRAIN_MS = 5000;
/** How often a delete is tried again on a record that changed under it (the same volume's). */
const DELETE_ATTEMPTS = 5;
/**
 * How long a create waits for this node's view of the store (its watch) to show the new record:
 * until then this node does not serve the volume, and a client it answered would find no export.
 */
const SEEN_WAIT_MS = 5000;
/** How often a create left without an answer asks the store again (lost-create.ts). */
const LOST_CREATE_RETRY_MS = 2000;

export interface ReplicatedCreate {
  name: string;
  sizeBytes: number;
  class?: string;
  replicas: number;
  locality?: string;
  preferredNode?: string;
}

export interface ReplicatedClone {
  name: string;
  source: SnapshotRef;
  /** Default: the snapshot's size. */
  sizeBytes?: number;
  /** Where the clone's new writes go; default: the snapshot's class. */
  class?: string;
  replicas: number;
  locality?: string;
  /** The primary goes there if that node holds the snapshot and has room; else placement picks. */
  preferredNode?: string;
}

/** What the control API asks of the cluster's replicated volumes. */
export interface ReplicatedVolumes {
  isReplicated(name: string): boolean;
  /**
   * Whether attachments of the volume take an attach claim: a volume of the cluster, also one whose
   * record this node has not heard of yet while a create has made its copy here (its view lags).
   */
  claimed(name: string): boolean;
  create(request: ReplicatedCreate): Promise<VolumeInfo>;
  /** A clone placed through the cluster, its copies on nodes that hold the snapshot. */
  clone(request: ReplicatedClone): Promise<VolumeInfo>;
  /** A volume of this node alone, not recorded in the cluster; refused while the cluster has one of its name. */
  createHere(request: CreateVolumeRequest): Promise<VolumeInfo>;
  /** A volume of this node alone; refused for a copy that a create under way made here. */
  deleteHere(name: string): Promise<void>;
  /** A clone of one copy, on this node, not recorded in the cluster; refused as createHere. */
  cloneHere(request: CloneVolumeRequest): Promise<VolumeInfo>;
  delete(name: string): Promise<void>;
  createCopy(name: string, sizeBytes: number, poolClass: string, source?: SnapshotRef, create?: CopyCreate, replacement?: boolean): Promise<VolumeInfo>;
  deleteCopy(name: string, checkOnly?: boolean): Promise<void>;
  dropLeftover(name: string): Promise<void>;
  list(): VolumeInfo[];
  info(name: string): VolumeInfo;
  resize(name: string, sizeBytes: number): Promise<VolumeInfo>;
  revert(name: string, snapshot: string): Promise<VolumeInfo>;
  createSnapshot(volume: string, name: string): Promise<SnapshotInfo>;
  listSnapshots(volume?: string): Promise<SnapshotInfo[]>;
  deleteSnapshot(volume: string, name: string): Promise<void>;
  /** This node's own snapshots of the volume: its copy's, or those a deleted volume left here. */
  copySnapshots(name: string): SnapshotInfo[];
  controlCopy(name: string, operation: CopyOperation, epoch: number): Promise<void>;
  /** Waits for, or refuses from now on, the control operations a primary got no answer to (control-ledger.ts). */
  settleCopyControls(name: string, ids: string[]): Promise<void>;
  trackAbsence(name: string, epoch: number, absent: string, absence: Absence | null): Promise<void>;
  trackActivity(name: string, epoch: number, revision: number, extents: readonly number[]): Promise<void>;
  blockChecksums(name: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array>;
  activity(name: string): Promise<{ epoch: number; map: DirtyMap }>;
  verify(name: string, onProgress: (doneBlocks: number, totalBlocks: number) => void, stop?: AbortSignal): Promise<VerifyReport>;
}

/** A node served without a cluster (API tests): its own volumes only. */
export function localVolumesOnly(engine: VolumeEngine): ReplicatedVolumes {
  const refuse = () => Promise.reject(failedPrecondition('this node serves without a cluster: replicated volumes are not available'));
  return {
    isReplicated: () => false,
    claimed: () => false,
    create: refuse,
    clone: refuse,
    createHere: (request) => engine.createVolume(request),
    deleteHere: (name) => engine.deleteVolume(name),
    cloneHere: (request) => engine.cloneVolume(request),
    delete: refuse,
    createCopy: refuse,
    deleteCopy: refuse,
    dropLeftover: refuse,
    controlCopy: refuse,
    settleCopyControls: refuse,
    trackAbsence: refuse,
    trackActivity: refuse,
    blockChecksums: refuse,
    activity: refuse,
    verify: refuse,
    list: () => engine.listVolumes(),
    info: (name) => engine.getVolume(name),
    resize: (name, sizeBytes) => engine.resizeVolume(name, sizeBytes),
    revert: (name, snapshot) => engine.revertVolume(name, snapshot),
    createSnapshot: (volume, name) => engine.createSnapshot(volume, name),
    listSnapshots: (volume) => Promise.resolve(engine.listSnapshots(volume)),
    deleteSnapshot: (volume, name) => engine.deleteSnapshot(volume, name),
    copySnapshots: (name) => engine.listSnapshots().filter((s) => s.volume === name),
  };
}

export class ClusterVolumes implements ReplicatedVolumes {
  /** For the calls on a write's path (onNode's fast ones). */
  private readonly fastClients = new NodeClients(FAST_NODE_CALL_DEADLINE_MS);
  /** Aborted by close(): ends what runs in the background (settling a create left without an answer). */
  private readonly stopping = new AbortController();
  /** Copy creates and leftover drops here, one at a time per volume name (serially). */
  private readonly copyTurns = new KeyedTurns();
  /** The control operations of primaries on this node's copies, by id (control-ledger.ts). */
  private readonly controls = new ControlLedger();
  /** The ids of the creates this process runs (between their begin and their end). */
  private readonly running = new Set<string>();

  constructor(
    private readonly engine: LocalEngine,
    private readonly controller: VolumeController,
    private readonly store: ClusterStore,
    private readonly self: string,
    private readonly logger: Logger,
    /** The nodes that forward a volume's clients to this node, its primary, with a connection open now. */
    private readonly forwardedFrom: (volume: string) => string[] = () => [],
  ) {}

  isReplicated(name: string): boolean {
    return this.controller.record(name) !== undefined;
  }

  /** The volumes this node holds alone: no record names them, and they are no copy of one (retired, or adopted by a create). */
  ownVolumeNames(): string[] {
    return this.engine.listNames().volumes.filter((name) => !this.isReplicated(name) && !this.controller.replicating(name) && !this.controller.retired(name));
  }

  claimed(name: string): boolean {
    return this.isReplicated(name) || this.controller.replicating(name);
  }

  async create(request: ReplicatedCreate): Promise<VolumeInfo> {
    await this.checkNameFree(request.name);
    return this.underIntent(request.name, async (intent, made) => {
      await this.controller.readNodes();
      await this.checkNoNodeVolume(request.name);
      const placement = place(this.controller.candidates(), request);
      // The record says the size every copy has: whole blocks.
      return this.record({ name: request.name, sizeBytes: wholeBlocks(request.sizeBytes), class: placement.class }, placement.nodes, intent, made);
    });
  }

  /**
   * Every copy of a snapshot is the same point of the write stream, so each copy of the clone is
   * cloned by its node from its own copy of the snapshot, at once, with no data sent: the clone's
   * copies go on nodes that hold the snapshot (a copy made after it, a replacement, does not).
   */
  async clone(request: ReplicatedClone): Promise<VolumeInfo> {
    await this.checkNameFree(request.name);
    const { volume, snapshot } = request.source;
    const holders = await this.snapshotHolders(volume, snapshot);
    const nodes = [...holders.keys()];
    const taken = holders.get(nodes[0]);
    if (!taken) throw notFound(`snapshot ${volume}@${snapshot} does not exist (or no node that holds it is up)`);
    if (nodes.length < request.replicas) {
      throw failedPrecondition(
        `a clone's copies are made on nodes that hold the snapshot, and ${volume}@${snapshot} is on ${nodes.length} (${nodes.join(', ')}): ` +
          `${request.replicas} replicas are too many (--replicas ${nodes.length} at most)`,
      );
    }
    if (request.locality !== undefined && !holders.has(request.locality)) {
      throw failedPrecondition(`locality: node ${request.locality} does not hold snapshot ${volume}@${snapshot} (${nodes.join(', ')} do)`);
    }
    return this.underIntent(request.name, async (intent, made) => {
      await this.controller.readNodes();
      await this.checkNoNodeVolume(request.name);
      const sizeBytes = wholeBlocks(request.sizeBytes ?? taken.sizeBytes);
      const candidates = this.controller.candidates().filter((n) => holders.has(n.id));
      const placement = place(candidates, { sizeBytes, replicas: request.replicas, class: request.class ?? taken.class, locality: request.locality, preferredNode: request.preferredNode });
      return this.record({ name: request.name, sizeBytes, class: placement.class, sourceSnapshot: `${volume}@${snapshot}` }, placement.nodes, intent, made, request.source);
    });
  }

  /** A volume of the cluster answers to its name on every node: one of this node's alone by that name would hide it here, or be deleted in its place. */
  async createHere(request: CreateVolumeRequest): Promise<VolumeInfo> {
    await this.checkNameFree(request.name);
    return this.serially(request.name, async () => {
      await this.freeHere(request.name);
      return this.engine.createVolume(request);
    });
  }

  /**
   * A volume of this node alone, deleted. Refused for this node's copy of a volume of the cluster
   * whose record this node has not heard of yet (a create under way adopted it, or its record was
   * just written): deleted, the volume would be recorded with a copy gone.
   */
  deleteHere(name: string): Promise<void> {
    return this.serially(name, async () => {
      if (this.controller.replicating(name)) {
        const creating = await createUnderWay(this.store, name, this.creator());
        if (creating) throw underWay(name, creating);
        if (await this.store.get(volumeKey(name))) throw new WeftError('ABORTED', `volume ${name} was just made in the cluster, and this node has not seen it yet: try again`);
      }
      await this.engine.deleteVolume(name);
    });
  }

  /** Refused, naming the nodes that hold it, for a snapshot of a replicated volume that this node holds no copy of. */
  async cloneHere(request: CloneVolumeRequest): Promise<VolumeInfo> {
    await this.checkNameFree(request.name);
    const own = await this.taken(this.copySnapshots(request.volume));
    const here = (await this.notMissed(own)).some((s) => s.name === request.snapshot);
    // Still here only because this copy missed its delete (missed-deletes.ts): deleted, as listings show.
    if (!here && own.some((s) => s.name === request.snapshot)) throw notFound(`snapshot ${request.volume}@${request.snapshot} does not exist`);
    const nodes = here ? [] : [...(await this.snapshotHolders(request.volume, request.snapshot)).keys()];
    if (nodes.length > 0) {
      throw failedPrecondition(
        `snapshot ${request.volume}@${request.snapshot} is not on node ${this.self}: a clone of one copy is made where the snapshot is, ` +
          `on ${nodes.join(' or ')} (ask that node, or name it with --locality)`,
      );
    }
    return this.serially(request.name, async () => {
      await this.freeHere(request.name);
      return this.engine.cloneVolume(request);
    });
  }

  /**
   * Before a volume of this node's own is made (in its turn, serially): refused while a create of
   * the name is under way in the cluster, which may make a copy here; a copy left here under the
   * name goes first, or its leftover key would have the new volume deleted.
   */
  private async freeHere(name: string): Promise<void> {
    const creating = await createUnderWay(this.store, name, this.creator());
    if (creating) throw underWay(name, creating);
    if (await this.store.get(leftoverKey(this.self, name))) await this.dropLeftoverNow(name);
  }

  /** Refused while the cluster has a volume of the name, or a deleted one's snapshots that keep it (kept-snapshots.ts). */
  private async checkNameFree(name: string): Promise<void> {
    validateName('volume', name);
    if (this.isReplicated(name) || (await this.store.get(volumeKey(name)))) throw alreadyExists(`volume ${name} already exists in the cluster`);
    const kept = await keptSnapshots(this.store, name);
    if (kept) {
      throw alreadyExists(
        `snapshots of an earlier volume named ${name} are kept on ${kept.nodes.join(', ')}: delete them (weft snapshot list ${name}) or choose another name`,
      );
    }
  }

  /**
   * A volume of one node alone by the name (made there without the cluster, or a copy a create cut
   * short left) would be served on that node in place of the cluster's: refused, naming the node.
   * A copy its node is told to drop (a leftover key) does not count, nor a volume of the cluster in
   * that node's view (one cut from the store may still show one deleted); a node that is down is not
   * asked, and one that is up but does not answer refuses the create (it may have one).
   */
  private async checkNoNodeVolume(name: string): Promise<void> {
    // A node that is down is not asked: its registration says which volumes it held alone. One of
    // them would be taken over by the volume of the cluster once the node is back.
    const down = this.controller.candidates().filter((n) => !n.up && this.controller.node(n.id)?.ownVolumes?.includes(name));
    for (const { id } of down) {
      if (!(await this.store.get(leftoverKey(id, name)))) throw alreadyExists(`volume ${name} exists on node ${id} as a volume of that node alone (as it registered; it is down): delete it there once it is up, or choose another name`);
    }
    const up = this.controller.candidates().filter((n) => n.up && n.pools.length > 0);
    const found = await Promise.all(
      up.map(async ({ id }) => {
        // The key is read before the node is asked as well as after: a node that drops its leftover
        // between the two deletes the copy, then the key, and would be taken for one that holds a
        // volume of its own.
        const leftover = async () => (await this.store.get(leftoverKey(id, name))) !== undefined;
        if (await leftover()) return [];
        const has = await this.onNode(id, (client) => client.getVolume(name), () => Promise.resolve(this.info(name)), true).then(
          (info) => info.replication === undefined,
          (err: Error) => {
            if (isNotFound(err)) return false;
            throw new WeftError('UNAVAILABLE', `node ${id} did not say whether it has a volume of its own named ${name} (${err.message}): try again`);
          },
        );
        return has && !(await leftover()) ? [id] : [];
      }),
    );
    const nodes = found.flat();
    if (nodes.length > 0) throw alreadyExists(`volume ${name} exists on node ${nodes.join(', ')} as a volume of that node alone: delete it there, or choose another name`);
  }

  /**
   * The nodes that may hold the volume's snapshots: its copies' nodes; for a deleted volume of the
   * cluster, those its kept-snapshots key names; else this node alone.
   */
  private async snapshotNodes(volume: string): Promise<{ nodes: string[]; kept?: KeptSnapshots }> {
    const record = this.controller.record(volume);
    if (record) return { nodes: record.replicas.map((r) => r.node) };
    const kept = this.engine.hasVolume(volume) ? undefined : await keptSnapshots(this.store, volume);
    return kept ? { nodes: kept.nodes, kept } : { nodes: [this.self] };
  }

  /**
   * What the nodes that keep a deleted volume's snapshots hold of them. A snapshot written down as
   * deleted is deleted where it is found, and left out; the nodes that hold none leave the key.
   */
  private async keptOn(volume: string, kept: KeptSnapshots): Promise<Map<string, SnapshotInfo[]>> {
    const answers = await this.snapshotsOn(kept.nodes, volume);
    const deleted = new Set(kept.deleted ?? []);
    const holding = new Map<string, SnapshotInfo[]>();
    for (const [node, snapshots] of answers) {
      const stays = await Promise.all(
        snapshots.map((s) =>
          !deleted.has(s.name)
            ? true
            : this.controlCopyOn(node, volume, { type: 'delete-snapshot', name: s.name }, 0).then(
                () => false,
                (err: unknown) => (this.logger.warn({ volume, snapshot: s.name, node, err }, 'could not delete a deleted snapshot found again'), true),
              ),
        ),
      );
      holding.set(node, snapshots.filter((_, i) => stays[i]));
    }
    await this.pruneKept(volume, holding);
    return new Map([...answers].map(([node, snapshots]) => [node, snapshots.filter((s) => !deleted.has(s.name))]));
  }

  /** What each of nodes that answers holds of the volume's snapshots (a node that is down is left out). */
  private async snapshotsOn(nodes: string[], volume: string): Promise<Map<string, SnapshotInfo[]>> {
    const answers = await Promise.all(
      nodes.map((node) =>
        this.onNode(node, (client) => client.copySnapshots(volume), () => Promise.resolve(this.copySnapshots(volume))).then(
          (snapshots) => [[node, snapshots] as const],
          () => [],
        ),
      ),
    );
    return new Map(answers.flat());
  }

  /**
   * The nodes that are up and hold the snapshot, with what each says of it (snapshotNodes). Not a
   * copy that missed its delete (missed-deletes.ts): it is deleted there, late, as listings show.
   */
  private async snapshotHolders(volume: string, snapshot: string): Promise<Map<string, SnapshotInfo>> {
    const { nodes, kept } = await this.snapshotNodes(volume);
    const answers = kept ? await this.keptOn(volume, kept) : await this.snapshotsOn(nodes, volume);
    const marked = await this.controller.snapshottingNow(volume);
    const missed = kept ? {} : await missedDeletes(this.store, volume);
    const holds = (node: string, s: SnapshotInfo) => s.name === snapshot && s.name !== marked && !missed[node]?.includes(snapshot);
    return new Map([...answers].flatMap(([node, listed]) => listed.filter((s) => holds(node, s)).map((s) => [node, s] as const)));
  }

  copySnapshots(name: string): SnapshotInfo[] {
    return this.engine.listSnapshots().filter((s) => s.volume === name);
  }

  /** The names of the snapshots node's copy holds (unlisted ones too), with the short deadline of a primary's calls. */
  async copySnapshotNamesOn(node: string, volume: string): Promise<string[]> {
    const snapshots = await this.onNode(node, (client) => client.copySnapshots(volume), () => Promise.resolve(this.copySnapshots(volume)), true);
    return snapshots.map((s) => s.name);
  }

  /**
   * Runs a create of name once it is written down (create-intent.ts); gives it up if it fails, its
   * copies with it. One whose record the store may or may not have (its answer lost) is settled
   * once the store tells: its copies stay until then (`weft volume show` too).
   */
  private async underIntent(name: string, create: (intent: HeldIntent, made: string[]) => Promise<VolumeInfo>): Promise<VolumeInfo> {
    const createId = randomUUID();
    this.running.add(createId);
    try {
      let intent: HeldIntent;
      try {
        intent = await beginCreate(this.store, name, createId, this.creator());
      } catch (err) {
        if (err instanceof BeginOutcomeUnknownError) this.settleLater(err.intent, [], err);
        throw err;
      }
      const made: string[] = [];
      try {
        return await create(intent, made);
      } catch (err) {
        if (err instanceof CreateOutcomeUnknownError) this.settleLater(intent, made, err);
        else await this.giveUp(intent, made);
        throw err;
      }
    } finally {
      this.running.delete(createId);
    }
  }

  /** This node, as the intent functions see it (create-intent.ts). */
  private creator(): CreatingNode {
    return {
      id: this.self,
      runs: (createId) => this.running.has(createId),
      onGivenUp: (volume, node, copies) => this.logger.warn({ volume, node, copies }, 'gave up a create cut short (its node died, lost the store, or restarted); its copies are deleted by their nodes'),
    };
  }

  /**
   * Has each node make its copy (a clone of its own copy of source, if given), then records the
   * volume, the first node its primary, if no record of that name exists and the create is not
   * given up.
   */
  private async record(volume: Pick<VolumeRecord, 'name' | 'sizeBytes' | 'class' | 'sourceSnapshot'>, nodes: string[], intent: HeldIntent, made: string[], source?: SnapshotRef): Promise<VolumeInfo> {
    const { createId } = intent;
    const record: VolumeRecord = { ...volume, replicas: nodes.map((node) => ({ node, state: 'in-sync' })), primary: nodes[0], epoch: 0, createId };
    for (const node of nodes) {
      await this.createCopyOn(node, record.name, record.sizeBytes, record.class, source, { id: createId, marked: true });
      made.push(node);
    }
    const mine = (stored: string) => parseVolumeRecord(stored)?.createId === createId;
    const created = await createKey(this.store, volumeKey(record.name), JSON.stringify(record), mine, { also: recordedIntent(intent, nodes) });
    if (!created) {
      if (await this.store.get(volumeKey(record.name))) throw alreadyExists(`volume ${record.name} was created in the cluster meanwhile`);
      throw new WeftError('ABORTED', `the create of volume ${record.name} was given up (this node was out of the cluster store's reach for a while): try again`);
    }
    this.logger.info({ volume: record.name, replicas: nodes, class: record.class, source: record.sourceSnapshot }, 'replicated volume created');
    for (const deadline = Date.now() + SEEN_WAIT_MS; !this.isReplicated(record.name) && Date.now() < deadline; ) await sleep(10);
    return this.info(record.name, record);
  }

  /**
   * Gives the failed create up, and has the nodes of its copies delete them at once, as each would
   * on seeing its leftover key; settled later if the store does not answer.
   */
  private async giveUp(intent: HeldIntent, made: readonly string[]): Promise<void> {
    const volume = intent.name;
    let nodes: string[] | undefined;
    try {
      nodes = await giveUpCreate(this.store, intent, made);
    } catch (err) {
      this.settleLater(intent, made, err as Error);
      return;
    }
    for (const node of nodes ?? []) {
      await this.onNode(node, (client) => client.dropLeftover(volume), () => this.dropLeftover(volume)).catch((err: unknown) => {
        this.logger.warn({ volume, node, err }, 'a copy of a refused create stays on its node until the node deletes it');
      });
    }
  }

  /** A create the store did not answer for is settled once it answers: made after all, or given up, its copies left to their nodes to delete. */
  private settleLater(intent: HeldIntent, made: readonly string[], err: Error): void {
    const volume = intent.name;
    this.logger.error({ volume, err }, 'create of a replicated volume: the store did not answer; its copies are kept until it does');
    settleLostCreate(this.store, intent, made, LOST_CREATE_RETRY_MS, this.stopping.signal).then(
      (outcome) => {
        if (outcome === 'created') this.logger.info({ volume }, 'create of a replicated volume left without an answer: the store has its record, the volume is made');
        else this.logger.warn({ volume }, 'create of a replicated volume left without an answer: the store has no record of it; its copies are left to their nodes to delete');
      },
      (error: unknown) => this.logger.warn({ volume, err: error }, 'create of a replicated volume left without an answer: not settled before weftd stopped; its copies stay'),
    );
  }

  /** Gives up the creates cut short (their node died, lost the store, or restarted midway): at each start, and each new lease. */
  giveUpAbandonedCreates(): Promise<void> {
    return giveUpAbandonedCreates(this.store, this.creator());
  }

  /**
   * Refused while a client has any copy open. The record goes with a leftover key for every copy
   * (leftovers.ts), in one transaction: a copy this node cannot delete (its node is down, or this
   * node dies on the way) is deleted by its own node once it sees its key.
   */
  async delete(name: string): Promise<void> {
    // The record of a volume just made changes a moment later (its first promotion, its copies'
    // states): the delete is tried again on the new one, of the same volume.
    const first = await this.store.get(volumeKey(name));
    for (let attempt = 1; ; attempt++) {
      const kv = attempt === 1 ? first : await this.store.get(volumeKey(name));
      if (!kv) throw new WeftError('NOT_FOUND', `volume ${name} is not in the cluster`);
      const record = parseVolumeRecord(kv.value);
      if (!record) throw malformedRecord(name);
      const sameVolume = first !== undefined && parseVolumeRecord(first.value)?.createId === record.createId;
      if (!sameVolume || attempt > DELETE_ATTEMPTS) throw failedPrecondition(`volume ${name} changed while it was being deleted (a failover?): try again`);
      if (await this.deleteRecorded(name, kv, record)) return;
    }
  }

  /** delete() on the record as read (kv): false if the record changed meanwhile, and nothing was done. */
  private async deleteRecorded(name: string, kv: KeyValue, record: VolumeRecord): Promise<boolean> {
    // Staged on a node (its attach claim): its clients may be on a node without a copy, which no
    // copy's node sees. The claim must stay absent until the record is gone (compared below).
    const claim = await this.store.get(attachClaimKey(name));
    if (claim) throw failedPrecondition(`volume ${name} is attached on node ${claimHolder(claim.value) ?? '(unknown)'} (staged there): unstage it before deleting`);
    const holders = record.replicas.map((r) => r.node);
    for (const node of holders) await this.onNode(node, (client) => client.deleteCopy(name, true), () => this.deleteCopy(name, true)).catch(skipDownOrNoCopy);
    // Every copy's node, which leaves the key once it holds no snapshot of the volume (at once if it
    // has none): a node that is down may hold some the others lack, and one may be taken meanwhile.
    // A snapshot the record marks as being taken was never acknowledged, and those deleted while a
    // copy was away were: deleted wherever they are found.
    const missed = await this.store.get(missedDeletesKey(name));
    const deleted = [...new Set([...(record.snapshotting !== undefined ? [record.snapshotting] : []), ...everyMissed(missed ? parseMissed(missed.value) : {})])];
    const kept: KeptSnapshots = { nodes: holders, ...(deleted.length > 0 ? { deleted } : {}) };
    const { succeeded } = await this.store.txn({
      compare: [
        { key: volumeKey(name), target: 'modRevision', op: '=', value: kv.modRevision },
        { key: missedDeletesKey(name), target: 'modRevision', op: '=', value: missed?.modRevision ?? 0 },
        { key: attachClaimKey(name), target: 'modRevision', op: '=', value: 0 },
      ],
      success: [
        { type: 'delete', key: volumeKey(name) },
        { type: 'delete', key: missedDeletesKey(name) },
        { type: 'delete', key: volumeLeaseKey(name) },
        { type: 'put', key: keptSnapshotsKey(name), value: JSON.stringify(kept) },
        ...holders.map((node) => ({ type: 'put' as const, key: leftoverKey(node, name), value: JSON.stringify({ reason: 'its volume was deleted', createId: record.createId } satisfies Leftover) })),
      ],
    });
    if (!succeeded) return false;
    // As each copy's node would on seeing its key: a copy of the name made since (a create took the key) stays.
    for (const node of holders) {
      await this.onNode(node, (client) => client.dropLeftover(name), () => this.dropLeftover(name)).catch((err: unknown) => {
        this.logger.warn({ volume: name, node, err }, 'a copy of a deleted volume stays on its node until the node deletes it');
      });
    }
    this.logger.info({ volume: name }, 'replicated volume deleted');
    return true;
  }

  /**
   * This node's part of a create (or a clone, of its own copy of source; create: which) or of a
   * replacement (no create; replacement: said so, by nodes of this version): its copy, served only
   * through the primary from now on.
   */
  createCopy(name: string, sizeBytes: number, poolClass: string, source?: SnapshotRef, create?: CopyCreate, replacement = false): Promise<VolumeInfo> {
    return this.serially(name, () => this.createCopyNow(name, sizeBytes, poolClass, source, create, replacement));
  }

  private async createCopyNow(name: string, sizeBytes: number, poolClass: string, source: SnapshotRef | undefined, create: CopyCreate | undefined, replacement: boolean): Promise<VolumeInfo> {
    // A leftover of an earlier life of the volume not dropped yet (its key seen late, or not yet at
    // all: this node just started) goes first, and its key with it, unless the record names this
    // node (a replacement reuses it): a copy made here now is not a leftover.
    if (await this.store.get(leftoverKey(this.self, name))) await this.dropLeftoverNow(name);
    // As the store has it now: a replacement is asked for as soon as its record names it.
    const kv = await this.store.get(volumeKey(name));
    const record = kv && parseVolumeRecord(kv.value);
    if (kv && !record) throw malformedRecord(name);
    // A copy of a volume already recorded is a replacement, which its record names (never a clone,
    // nor a create's: another create of the name won, and the copy here is its own).
    if (record && (source || create !== undefined || !record.replicas.some((r) => r.node === this.self))) throw alreadyExists(`volume ${name} already exists in the cluster`);
    // A replacement asked for by a primary whose volume has been deleted since: a copy made now would
    // be nobody's, and would keep the name from being created again.
    if (replacement && !record) throw notFound(`volume ${name} is no longer in the cluster: no copy of it is made here`);
    // Refused before the mark: a create given up must never have a volume of this node's own deleted.
    if (create !== undefined && this.engine.hasVolume(name)) throw alreadyExists(`volume ${name} already exists on node ${this.self}`);
    if (create?.marked) await markCopy(this.store, name, create.id, this.self);
    let info: VolumeInfo;
    try {
      info = await this.makeCopy(name, sizeBytes, poolClass, source, record !== undefined);
    } catch (err) {
      if (create?.marked) await unmarkCopy(this.store, name, create.id, this.self).catch(() => undefined);
      throw err;
    }
    await this.controller.adopt(name, sizeBytes);
    return info;
  }

  private makeCopy(name: string, sizeBytes: number, poolClass: string, source: SnapshotRef | undefined, replacement: boolean): Promise<VolumeInfo> {
    if (source) return this.engine.cloneVolume({ name, volume: source.volume, snapshot: source.snapshot, sizeBytes, class: poolClass });
    // A copy left here by an earlier life of the volume is reused: the full copy rewrites all of it.
    if (replacement && this.engine.hasVolume(name)) return Promise.resolve(this.engine.getVolume(name));
    return this.engine.createVolume({ name, sizeBytes, class: poolClass });
  }

  /** createCopy on node: here directly, elsewhere through its API. */
  async createCopyOn(node: string, name: string, sizeBytes: number, poolClass: string, source?: SnapshotRef, create?: CopyCreate): Promise<void> {
    await this.onNode(node, (client) => client.createCopy(name, sizeBytes, poolClass, source, create), () => this.createCopy(name, sizeBytes, poolClass, source, create));
  }

  /** A replacement's copy on node, for the primary to resync (refused there once the volume is deleted). */
  async createReplacementOn(node: string, name: string, sizeBytes: number, poolClass: string): Promise<void> {
    await this.onNode(node, (client) => client.createCopy(name, sizeBytes, poolClass, undefined, undefined, true), () => this.createCopy(name, sizeBytes, poolClass, undefined, undefined, true));
  }

  /**
   * A copy left on this node that its volume no longer names (leftovers.ts): deleted, then its key.
   * A copy the record names again (a new life of the volume reused it) stays.
   */
  dropLeftover(name: string): Promise<void> {
    return this.serially(name, async () => {
      // Its key gone, a create here has taken the name since (it deletes the key first): that copy stays.
      if (await this.store.get(leftoverKey(this.self, name))) await this.dropLeftoverNow(name);
    });
  }

  /**
   * The copy goes unless the record names this node again. Its snapshots stay if the volume was
   * deleted (this node leaves the kept-snapshots key if it holds none); if the volume lives on
   * elsewhere (the copy was replaced), they go with it: its snapshots are those of the copies its
   * record names, and no call would ever reach these again.
   */
  private async dropLeftoverNow(name: string): Promise<void> {
    const leftover = await this.store.get(leftoverKey(this.self, name));
    const kv = await this.store.get(volumeKey(name));
    const record = kv && parseVolumeRecord(kv.value);
    // Which copies it names cannot be told: none is deleted on its word.
    if (kv && !record) throw malformedRecord(name);
    const left = leftover && parseLeftover(leftover.value);
    // The copy of an earlier volume of the name (deleted, and made again since) is never reused for
    // this one, even where this one's record names this node (a replacement placed here): it would
    // bring that volume's size (a promotion writes a larger copy's size into the record) and its
    // epoch (a copy refuses a primary's connection at an epoch below its own).
    const ownVolume = record !== undefined && (!left || left.createId === undefined || left.createId === record.createId);
    const named = ownVolume && record.replicas.some((r) => r.node === this.self);
    // Replaced, whatever became of the volume since (deleted, or this node named again by a later
    // replacement). Its snapshots go first: a copy still in use is only emptied below, and its
    // snapshots would hold their blocks meanwhile, in a pool that may be the one that filled up.
    // One that cannot go now (a client reads it) is tried again with the drop, once the copy is
    // dealt with: the drop fails meanwhile, and the copy is still emptied.
    const replaced = left ? (left.replaced ?? (record !== undefined && !named)) : false;
    let kept: unknown;
    if (replaced) {
      for (const snapshot of this.copySnapshots(name)) {
        try {
          await this.engine.deleteSnapshot(name, snapshot.name);
          this.logger.info({ volume: name, snapshot: snapshot.name }, 'deleted the snapshot of a replaced copy');
        } catch (err) {
          kept ??= err;
        }
      }
    }
    if (!named && this.engine.hasVolume(name)) {
      await this.deleteCopy(name).catch(async (err: unknown) => {
        if (isInUse(err)) await this.emptyCopy(name);
        throw err;
      });
      this.logger.info({ volume: name }, 'deleted a copy its volume no longer names');
    }
    if (kept !== undefined) throw kept;
    if (!record) await this.leaveKeptIfNone(name);
    if (leftover) await this.store.delete(leftoverKey(this.self, name));
  }

  /**
   * Frees the blocks of a copy its volume no longer names that cannot be deleted yet: a client of
   * this node still has it open (its I/O goes to the primary, through the stack on top of it), or a
   * replication connection that has not closed. Its data is nobody's (were the copy named again, it
   * would get a full copy), and its pool may be the one that filled up and made it be replaced.
   */
  private async emptyCopy(name: string): Promise<void> {
    const { epoch, sizeBytes, allocatedBytes } = this.engine.getVolume(name);
    if (allocatedBytes === 0) return;
    const copy = this.engine.openVolume(name, { epoch, purpose: 'emptying a copy its volume no longer names' });
    try {
      await copy.trim(0, sizeBytes, true);
    } finally {
      copy.close();
    }
    this.logger.info({ volume: name, allocatedBytes }, 'emptied a copy its volume no longer names, in use here until its clients go');
  }

  /** Takes this node out of a deleted volume's kept-snapshots key once it holds nothing of that name. */
  private async leaveKeptIfNone(name: string): Promise<void> {
    if (this.engine.hasVolume(name) || this.copySnapshots(name).length > 0) return;
    await leaveKeptSnapshots(this.store, name, [this.self]);
  }

  /**
   * Takes the nodes that answered with no snapshot out of the deleted volume's kept-snapshots key
   * (none can take one again: a deleted volume takes no snapshots, and its name is not free). A
   * failure leaves them in, to be taken out at the next listing.
   */
  private async pruneKept(volume: string, answers: Map<string, SnapshotInfo[]>): Promise<void> {
    const empty = [...answers].filter(([, snapshots]) => snapshots.length === 0).map(([node]) => node);
    if (empty.length === 0) return;
    await leaveKeptSnapshots(this.store, volume, empty).catch((err: unknown) => this.logger.warn({ volume, nodes: empty, err }, 'could not update the kept snapshots of a deleted volume'));
  }

  /**
   * Runs fn once every earlier call for the same name has ended: a leftover's drop, seen late (its
   * volume deleted and made again at once), never deletes the copy a create is making here.
   */
  private serially<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.copyTurns.run(name, fn);
  }

  /** This node's part of a delete; checkOnly: refuses if a client has the copy open, and changes nothing. */
  async deleteCopy(name: string, checkOnly = false): Promise<void> {
    this.refuseClients(name, 'disconnect them first');
    if (checkOnly) return this.refuseForwardedClients(name, 'disconnect them first');
    this.controller.forget(name);
    // The primary's replication connections close once it stops serving (it saw the record go).
    const deadline = Date.now() + DRAIN_MS;
    while (this.engine.openHandles(name).length > 0 && Date.now() < deadline) await sleep(50);
    await this.engine.deleteVolume(name);
  }

  /** Grows every copy, through the primary. */
  async resize(name: string, sizeBytes: number): Promise<VolumeInfo> {
    await this.onPrimary(name, (client) => client.resizeVolume(name, sizeBytes), () => this.engine.resizeVolume(name, sizeBytes));
    // This node's view of the record may not have the new size yet (a node without a copy, the CSI
    // controller's): the primary has it, and a CO that heard the old size would grow the filesystem to it.
    const info = this.info(name);
    return { ...info, sizeBytes: Math.max(info.sizeBytes, wholeBlocks(sizeBytes)) }; // as the copies grew
  }

  /**
   * Reverts every copy, through the primary. Refused while the volume is attached (its attach claim):
   * a node that holds no copy forwards its clients to the primary, where no copy node sees them as
   * clients of its own (the primary refuses it too while such a client has a connection open).
   */
  async revert(name: string, snapshot: string): Promise<VolumeInfo> {
    const attached = this.isReplicated(name) ? await this.controller.attachedNodeNow(name) : undefined;
    if (attached) throw failedPrecondition(`volume ${name} is attached on node ${attached} (staged there): unstage it before reverting`);
    await this.onPrimary(name, (client) => client.revertVolume(name, snapshot), () => this.engine.revertVolume(name, snapshot));
    return this.info(name);
  }

  /** A snapshot of every copy at one point of the write stream, taken by the primary. */
  async createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    const made = await this.onPrimary(volume, (client) => client.createSnapshot(volume, name), () => this.engine.createSnapshot(volume, name));
    // Made: this node's view of the record no longer marks it (what `weft volume show` and NBD_OPT_LIST read).
    for (const deadline = Date.now() + SEEN_WAIT_MS; this.controller.record(volume)?.snapshotting === name && Date.now() < deadline; ) await sleep(10);
    return made;
  }

  /** Compares the copies and repairs them, on the primary (replica-verify.ts). */
  async verify(name: string, onProgress: (doneBlocks: number, totalBlocks: number) => void, stop?: AbortSignal): Promise<VerifyReport> {
    const primary = this.controller.record(name)?.primary;
    if (primary !== undefined && primary !== this.self) {
      // No deadline of its own: the primary's progress passes through, and the caller's deadline covers the whole way.
      return this.onNode(primary, (client) => client.verifyVolume(name, onProgress, stop, null), () => Promise.reject(new Error('unreachable')));
    }
    const device = await this.controller.replication(name);
    // Held like a connection, so that the volume is not deleted under the verify.
    const handle = this.engine.openVolume(name, { purpose: 'verify' });
    try {
      const verified = await verifyReplicas(device, this.self, onProgress, stop);
      this.logger.info({ volume: name, replicas: verified.replicas, skipped: verified.skippedReplicas, badBlocks: verified.badBlockOffsets.length }, 'replicated volume verified');
      return { volume: name, ...verified };
    } finally {
      handle.close();
    }
  }

  /**
   * A replicated volume's snapshots are those of its copies: asked of the primary when this node
   * holds none; a deleted one's, of the nodes that keep them.
   */
  async listSnapshots(volume?: string): Promise<SnapshotInfo[]> {
    if (volume !== undefined) return this.snapshotsOf(volume);
    // Every snapshot: this node's, and those of the cluster's volumes it holds no copy of. Without
    // the store (an etcd outage), the deleted volumes' are this node's own.
    const kept = (await this.store.list(keptSnapshotsPrefix).catch(() => [])).map((kv) => kv.key.slice(keptSnapshotsPrefix.length));
    const elsewhere = [...this.controller.recordNames().filter((name) => !this.holdsNamedCopy(name)), ...kept];
    const theirs = await Promise.all(elsewhere.map((name) => this.snapshotsOf(name).catch(() => [])));
    const own = this.engine.listSnapshots().filter((s) => !kept.includes(s.volume) && !this.controller.replaced(s.volume));
    return [...(await this.notMissed(await this.taken(own))), ...theirs.flat()];
  }

  /**
   * Leaves out the snapshots deleted while this node's copy was away, which it still holds until its
   * primary deletes them (missed-deletes.ts). All of them, if the store cannot be read (an outage).
   */
  private async notMissed(snapshots: SnapshotInfo[]): Promise<SnapshotInfo[]> {
    const volumes = new Set(snapshots.map((s) => s.volume).filter((volume) => this.isReplicated(volume)));
    if (volumes.size === 0) return snapshots;
    const missed = await this.store.list(missedDeletesPrefix).catch(() => []);
    const gone = new Set(missed.flatMap((kv) => (parseMissed(kv.value)[this.self] ?? []).map((name) => `${kv.key.slice(missedDeletesPrefix.length)}@${name}`)));
    return snapshots.filter((s) => !gone.has(`${s.volume}@${s.name}`));
  }

  /**
   * Whether this node holds a copy that its volume's record names: a replaced one, kept until its
   * clients here let go of it, is not the volume's any more (nor are its snapshots, until the drop deletes them).
   */
  private holdsNamedCopy(volume: string): boolean {
    return this.engine.hasVolume(volume) && !this.controller.replaced(volume);
  }

  /** Without the snapshot its volume's record marks as being taken: it is not one yet, and may be deleted (VolumeRecord.snapshotting). */
  private async taken(snapshots: SnapshotInfo[]): Promise<SnapshotInfo[]> {
    const volumes = [...new Set(snapshots.map((s) => s.volume))];
    const marks = new Map(await Promise.all(volumes.map(async (volume) => [volume, await this.controller.snapshottingNow(volume)] as const)));
    return snapshots.filter((s) => marks.get(s.volume) !== s.name);
  }

  private async snapshotsOf(volume: string): Promise<SnapshotInfo[]> {
    const primary = this.controller.record(volume)?.primary;
    if (this.holdsNamedCopy(volume)) return this.notMissed(await this.taken(this.engine.listSnapshots(volume)));
    if (primary !== undefined) return this.onNode(primary, (client) => client.listSnapshots(volume), () => Promise.resolve(this.engine.listSnapshots(volume)));
    // Without the store (an etcd outage), what this node holds.
    const { nodes, kept } = await this.snapshotNodes(volume).catch(() => ({ nodes: [this.self], kept: undefined }));
    if (!kept) return this.engine.listSnapshots(volume);
    const answers = await this.keptOn(volume, kept);
    if (answers.size === 0) throw new WeftError('UNAVAILABLE', `the snapshots of deleted volume ${volume} are kept on ${nodes.join(', ')}, and none of them is up`);
    // Every copy holds the same snapshots (one that missed a delete, perhaps one more): each once.
    const byName = new Map([...answers.values()].flat().map((s) => [s.name, s]));
    return [...byName.values()];
  }

  /**
   * Deleted from every copy; a copy on a node that is down keeps it (logged), one that refuses (the
   * snapshot in use there) fails the call, which a retry finishes. A deleted volume's:
   * from every node that keeps them, and one that is down deletes it when it is back (written down
   * in the kept-snapshots key), so that it is gone as soon as it is gone where it could be asked.
   */
  async deleteSnapshot(volume: string, name: string): Promise<void> {
    // Its copies may be taking it now: settled by its primary (kept or deleted) before it can go.
    if ((await this.controller.snapshottingNow(volume)) === name) throw failedPrecondition(`snapshot ${volume}@${name} is being taken, or was cut short and is not settled yet: try again`);
    const { nodes, kept } = await this.snapshotNodes(volume);
    if (!kept && !this.isReplicated(volume)) return this.engine.deleteSnapshot(volume, name);
    // As it is before the delete: a snapshot of the name taken from now on changes it (recordMissed).
    const record = kept ? undefined : await this.store.get(volumeKey(volume));
    const operation: CopyOperation = { type: 'delete-snapshot', name };
    const outcomes = await Promise.allSettled(nodes.map((node) => this.controlCopyOn(node, volume, operation, 0)));
    const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [[nodes[i], o.reason as Error] as const] : []));
    const unanswered = failed.filter(([, err]) => !isNotFound(err));
    const first = (matches: (err: Error) => boolean) => failed.find(([, err]) => matches(err))?.[1];
    // Deleted nowhere, and kept somewhere (in use, say): refused.
    const deletedNowhere = failed.length === outcomes.length;
    if (!kept && deletedNowhere) {
      const refusal = first((err) => !isNotFound(err) && !isUnavailable(err));
      if (refusal) throw refusal;
    }
    // In use on a node, say: refused, so that it is tried again (it is not found where it went). A
    // node that is down, or whose copy is out for good (failed, being replaced), holds nothing up.
    const gone = new Set(this.controller.record(volume)?.replicas.filter((r) => r.state === 'failed').map((r) => r.node));
    const refused = unanswered.find(([node, err]) => !isUnavailable(err) && !gone.has(node));
    if (refused) throw refused[1];
    if (!kept) {
      // A copy that did not answer (a failed one too: it is listed until replaced) is rid of it once
      // it can (missed-deletes.ts), if any copy answered: a retry too (found nowhere that answered,
      // it may be on the copies that did not).
      const missed = unanswered.map(([node]) => node);
      if (missed.length > 0 && unanswered.length < outcomes.length && record) {
        await this.recordMissed(volume, name, missed, nodes.filter((node) => !missed.includes(node)), record);
        this.logger.warn({ volume, snapshot: name, nodes: missed }, 'a deleted snapshot stays on copies that did not answer until their primary deletes it');
      }
      // Else not found if a node said so and the others are down (a retry of a delete that went
      // through while one was: the spec wants OK for it); else the nodes' silence.
      if (deletedNowhere) throw first(isNotFound) ?? failed[0][1];
      return;
    }
    const down = unanswered.map(([node]) => node);
    if (failed.length === outcomes.length && down.length === 0 && !kept.deleted?.includes(name)) throw failed[0][1];
    if (down.length > 0) {
      await markKeptDeleted(this.store, volume, name);
      this.logger.warn({ volume, snapshot: name, nodes: down }, 'a deleted snapshot of a deleted volume stays on nodes that are down until they are back');
    }
    const now = await keptSnapshots(this.store, volume);
    if (now) await this.keptOn(volume, now);
  }

  /**
   * Writes down that the copies on `missed` did not get a snapshot's delete, while the volume's
   * record is as read before the delete. Changed since: written only if no copy that got the delete
   * holds a snapshot of the name now (one taken since must not be deleted in the old one's place).
   * Gone (the volume deleted meanwhile): written in its kept-snapshots key instead.
   */
  private async recordMissed(volume: string, snapshot: string, missed: string[], answered: string[], record: KeyValue): Promise<void> {
    let read = record;
    for (let attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
      if (await addMissedDeletes(this.store, volume, snapshot, missed, read)) return;
      const now = await this.store.get(volumeKey(volume));
      if (now?.createRevision !== record.createRevision) return markKeptDeleted(this.store, volume, snapshot);
      const held = await Promise.all(answered.map((node) => this.copySnapshotNamesOn(node, volume).catch(() => [] as string[])));
      if (held.some((names) => names.includes(snapshot))) return;
      read = now;
    }
    throw new WeftError('ABORTED', `volume ${volume} changed while snapshot ${snapshot} was being deleted: try again`);
  }

  /**
   * At start and on each new lease: of each deleted volume whose snapshots this node keeps, deletes
   * those deleted while it was away, and leaves the key if none is left.
   */
  async tidyKept(): Promise<void> {
    for (const kv of await this.store.list(keptSnapshotsPrefix)) {
      const volume = kv.key.slice(keptSnapshotsPrefix.length);
      const kept = parseKept(kv.value);
      if (!kept.nodes.includes(this.self)) continue;
      try {
        for (const snapshot of this.copySnapshots(volume).filter((s) => kept.deleted?.includes(s.name))) {
          await this.engine.deleteSnapshot(volume, snapshot.name);
          this.logger.info({ volume, snapshot: snapshot.name }, 'deleted a snapshot of a deleted volume that was deleted while this node was away');
        }
        await this.leaveKeptIfNone(volume);
      } catch (err) {
        this.logger.warn({ volume, err }, 'could not tidy the snapshots this node keeps of a deleted volume; the next listing tries again');
      }
    }
  }

  /**
   * Runs a control operation on node's copy: here directly, elsewhere through its API. `held`: the
   * volume's writes wait for it (the primary's own control operations), so it gets the short
   * deadline of the calls on a write's path: a forwarder gives up on a write after 15 s.
   */
  controlCopyOn(node: string, volume: string, operation: CopyOperation, epoch: number, held = false): Promise<void> {
    return this.onNode(node, (client) => client.controlCopy(volume, operation, epoch), () => this.controlCopy(volume, operation, epoch), held).catch((err: Error) => {
      // Unanswered, it may still be carried out there. Not found there, as here (the volume runner
      // tells a snapshot already gone by it).
      if (err instanceof WeftApiError && err.code === status.DEADLINE_EXCEEDED) throw new NoAnswerError(err.message);
      // The copy's own refusals, as a local call gives them (the runner tells an answer from a call lost on the way).
      const refusal = err instanceof WeftApiError ? COPY_REFUSALS.get(err.code) : undefined;
      throw refusal ? new WeftError(refusal, err.message) : err;
    });
  }

  /** Runs on node's copy settleCopyControls (here directly, elsewhere through its API), with the deadline of controlCopyOn's held calls. */
  settleCopyControlsOn(node: string, volume: string, ids: string[]): Promise<void> {
    return this.onNode(node, (client) => client.settleCopyControls(volume, ids), () => this.settleCopyControls(volume, ids), true).catch((err: unknown) => {
      // A node of an earlier version reads a settle as a resize to no size: it cannot settle, as before there was settling.
      if (!(err instanceof WeftApiError && err.code === status.INVALID_ARGUMENT)) throw err;
      this.logger.warn({ node, volume, ids }, 'a copy of an earlier version cannot settle the control operations it gave no answer to: going on without');
    });
  }

  settleCopyControls(_name: string, ids: string[]): Promise<void> {
    return this.controls.settle(ids);
  }

  /**
   * This node's part of a control operation, from the primary at epoch: refused if a newer primary
   * raised this copy's epoch, or if the primary, getting no answer, has settled it already (its id).
   */
  controlCopy(name: string, operation: CopyOperation, epoch: number): Promise<void> {
    return this.controls.run(operation.id, () => this.controlCopyNow(name, operation, epoch));
  }

  private async controlCopyNow(name: string, operation: CopyOperation, epoch: number): Promise<void> {
    // From a primary (an epoch given; a user's delete gives none): one that has lost the volume must
    // not delete a snapshot its successor took (its undo of one that failed).
    if (operation.type === 'delete-snapshot') {
      const del = () => this.engine.deleteSnapshot(name, operation.name);
      if (epoch > 0 && this.engine.hasVolume(name)) return this.engine.fence(name).controlAt(epoch, del, (own) => this.staleEpoch(name, own, epoch));
      return del();
    }
    const copy = this.controller.localCopy(name);
    if (!copy) throw new WeftError('NOT_FOUND', `node ${this.self} holds no copy of volume ${name}`);
    this.checkEpoch(name, epoch);
    if (operation.type === 'revert') this.checkRevert(name, operation.snapshot);
    // A resize checks the size itself as it runs: asked first, only that.
    if (operation.type === 'resize' && operation.checkOnly) this.engine.checkResize(name, operation.sizeBytes);
    if ((operation.type === 'revert' || operation.type === 'resize') && operation.checkOnly) return;
    await this.engine.fence(name).controlAt(epoch, () => applyTo(copy, operation), (own) => this.staleEpoch(name, own, epoch));
  }

  /** Refuses a primary's request at epoch once this node's copy has a newer one. */
  private checkEpoch(name: string, epoch: number): void {
    const own = this.engine.getVolume(name).epoch;
    if (own > epoch) throw this.staleEpoch(name, own, epoch);
  }

  private staleEpoch(name: string, own: number, epoch: number): WeftError {
    return failedPrecondition(`the copy of ${name} on ${this.self} is at epoch ${own}: a primary at epoch ${epoch} is no longer the primary`);
  }

  /**
   * trackAbsence on node: here directly, elsewhere through its API. A call on a write's path (the
   * write that took a copy out waits for it): a node that does not answer within the short deadline
   * is dropped as failing, where 30 s would fail the forwarded clients' writes meanwhile.
   */
  trackAbsenceOn(node: string, volume: string, epoch: number, absent: string, absence: Absence | null): Promise<void> {
    return this.onNode(node, (client) => client.trackAbsence(volume, epoch, absent, absence), () => this.trackAbsence(volume, epoch, absent, absence), 'write-path');
  }

  /** This node's copy logs what copy `absent` misses (or stops, absence null), at the primary's word (epoch-checked as controlCopy). */
  async trackAbsence(name: string, epoch: number, absent: string, absence: Absence | null): Promise<void> {
    const log = this.controller.absenceLog(name);
    if (!log) throw new WeftError('NOT_FOUND', `node ${this.self} holds no copy of volume ${name}`);
    this.checkEpoch(name, epoch);
    await (absence ? log.track(absent, absence) : log.forget(absent));
  }

  /** trackActivity on node: here directly, elsewhere through its API. */
  trackActivityOn(node: string, volume: string, epoch: number, revision: number, extents: readonly number[]): Promise<void> {
    return this.onNode(node, (client) => client.trackActivity(volume, epoch, revision, extents), () => this.trackActivity(volume, epoch, revision, extents), 'write-path');
  }

  /** This node's copy records the primary's activity log (epoch-checked as controlCopy). */
  async trackActivity(name: string, epoch: number, revision: number, extents: readonly number[]): Promise<void> {
    const record = this.controller.peerActivity(name);
    if (!record) throw new WeftError('NOT_FOUND', `node ${this.self} holds no copy of volume ${name}`);
    this.checkEpoch(name, epoch);
    await record.record(epoch, revision, extents);
  }

  /** blockChecksums on node: here directly, elsewhere through its API. */
  blockChecksumsOn(node: string, volume: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array> {
    return this.onNode(node, (client) => client.blockChecksums(volume, epoch, offsetBytes, lengthBytes), () => this.blockChecksums(volume, epoch, offsetBytes, lengthBytes), 'write-path');
  }

  /**
   * The checksum of each block of the range on this node's copy, for the primary at epoch. Only
   * once the copy is at that epoch: raising it drained every write of the primaries before.
   */
  async blockChecksums(name: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array> {
    if (!this.engine.hasVolume(name)) throw new WeftError('NOT_FOUND', `node ${this.self} holds no copy of volume ${name}`);
    const { epoch: own, sizeBytes } = this.engine.getVolume(name);
    if (own !== epoch) throw failedPrecondition(`the copy of ${name} on ${this.self} is at epoch ${own}, not at the asking primary's ${epoch}`);
    const aligned = offsetBytes % BLOCK_BYTES === 0 && lengthBytes % BLOCK_BYTES === 0;
    if (!aligned || lengthBytes > MAX_CHECKSUM_RANGE_BYTES || offsetBytes + lengthBytes > sizeBytes) {
      throw invalidArgument(`block checksums of ${name}: range ${offsetBytes}+${lengthBytes} must be block-aligned, at most ${MAX_CHECKSUM_RANGE_BYTES} bytes long and within the volume (${sizeBytes} bytes)`);
    }
    return this.engine.blockChecksums(name, offsetBytes, lengthBytes);
  }

  /** What refuses the revert of a copy: a client that has it open, a snapshot it lacks, or one of another size (the record's size only grows). */
  private checkRevert(name: string, snapshot: string): void {
    this.refuseClients(name, 'disconnect them before reverting');
    this.refuseForwardedClients(name, 'disconnect them before reverting');
    const taken = this.engine.listSnapshots(name).find((s) => s.name === snapshot);
    if (!taken) throw notFound(`snapshot ${name}@${snapshot} is not on node ${this.self}`);
    const { sizeBytes } = this.engine.getVolume(name);
    if (taken.sizeBytes !== sizeBytes) {
      throw failedPrecondition(`volume ${name} was grown to ${sizeBytes} bytes after snapshot ${snapshot} (${taken.sizeBytes} bytes): a replicated volume does not shrink; clone the snapshot instead`);
    }
  }

  /**
   * On the primary: refuses if clients of nodes without a copy forward to it (no copy's node sees
   * them). A copy's node keeps its connection open after its clients left; they count there.
   */
  private refuseForwardedClients(name: string, advice: string): void {
    const record = this.controller.record(name);
    const copies = record?.replicas.map((r) => r.node) ?? [];
    const forwarders = record?.primary === this.self ? this.forwardedFrom(name).filter((node) => !copies.includes(node)) : [];
    if (forwarders.length > 0) throw failedPrecondition(`volume ${name} is in use by clients on ${forwarders.map((n) => `node ${n}`).join(', ')}, forwarded to its primary ${this.self}: ${advice}`);
  }

  /** Refuses if a client (anything but a primary's replication, which opens at an epoch) has the copy open on this node. */
  private refuseClients(name: string, advice: string): void {
    const inUse = this.engine.openHandles(name).filter((h) => h.epoch === undefined);
    if (inUse.length === 0) return;
    const who = inUse.map((h) => (h.peer ? `NBD client ${h.peer}` : (h.purpose ?? 'a handle')));
    throw new InUseError(`volume ${name} is in use on node ${this.self} by ${who.join(', ')}: ${advice}`);
  }

  /** activity on node: here directly, elsewhere through its API. */
  activityOn(node: string, volume: string): Promise<{ epoch: number; map: DirtyMap }> {
    return this.onNode(node, (client) => client.activity(volume), () => this.activity(volume));
  }

  /** Where this node's copy may differ from the others, from its activity log (its last time as the primary). */
  async activity(name: string): Promise<{ epoch: number; map: DirtyMap }> {
    const log = this.controller.activityLog(name);
    if (!log) throw new WeftError('NOT_FOUND', `node ${this.self} holds no copy of volume ${name}`);
    return { epoch: log.epoch, map: log.regions() };
  }

  /** This node's volumes, and the cluster's replicated volumes it holds no copy of. */
  list(): VolumeInfo[] {
    const local = this.engine.listVolumes().map((v) => (this.isReplicated(v.name) ? this.info(v.name) : v));
    const elsewhere = this.controller.recordNames().filter((name) => !this.engine.hasVolume(name));
    return [...local, ...elsewhere.map((name) => this.info(name))].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** A volume as this node answers for it: its own copy's figures if it holds one, and the cluster's view of the copies. */
  info(name: string, known?: VolumeRecord): VolumeInfo {
    const view = this.controller.view(name);
    const record = view?.record ?? known;
    if (!record) return this.engine.getVolume(name);
    const live = new Map((view?.replicas ?? []).map((r) => [r.id, r]));
    const replicas = record.replicas.map((r): ReplicaInfo => {
      const status = live.get(r.node);
      return {
        node: r.node,
        pool: record.class,
        state: r.state,
        live: status !== undefined,
        behindBytes: status?.behindBytes ?? 0,
        resyncCopiedBytes: status?.resyncCopiedBytes ?? 0,
        resyncTotalBytes: status?.resyncTotalBytes ?? 0,
      };
    });
    const replication = { primary: record.primary, epoch: record.epoch, replicas, attachedNode: this.controller.attachedNode(name) ?? '', snapshotting: record.snapshotting ?? '' };
    // The size its stack serves (ReplicationLayer): also where this copy lags behind the record.
    if (this.engine.hasVolume(name)) {
      const copy = this.engine.getVolume(name);
      return { ...copy, sizeBytes: Math.max(copy.sizeBytes, record.sizeBytes), replication };
    }
    return { name, class: record.class, sizeBytes: record.sizeBytes, sourceSnapshot: record.sourceSnapshot, allocatedBytes: 0, snapshotCount: 0, connections: 0, checksumErrors: 0, epoch: record.epoch, createdAt: '', layers: [], replication };
  }

  /** Runs a call on the volume's primary (here for a volume of this node's own). */
  private onPrimary<T>(volume: string, remote: (client: WeftClient) => Promise<T>, local: () => Promise<T>): Promise<T> {
    return this.onNode(this.controller.record(volume)?.primary ?? this.self, remote, local);
  }

  /**
   * Runs a call on node: here directly, elsewhere through its control API. fast: the node's address
   * as last seen (the store read only for a node not seen up), a short deadline and a client kept
   * open. 'write-path', for a call a write waits for (a copy's notices): fast, and a node the store
   * lists down is tried all the same at its address as last seen. Its lease lapsed says it lost the
   * store, not its copy, which may take every write still: the call's failure decides.
   */
  private async onNode<T>(node: string, remote: (client: WeftClient) => Promise<T>, local: () => Promise<T>, fast: boolean | 'write-path' = false): Promise<T> {
    if (node === this.self) return local();
    // Its address as it is now (it may have restarted on other ports); as last seen while the store is out of reach.
    const known = fast ? this.controller.node(node) : undefined;
    // A write's notice goes to a node listed down without asking the store first: its address as
    // last seen is the one to try, and a store out of reach would hold up every such write.
    if (known?.state !== 'up' && !(fast === 'write-path' && known)) await this.controller.readNodes().catch(() => undefined);
    const target = this.controller.node(node);
    if (!target || (target.state !== 'up' && fast !== 'write-path')) throw new WeftError('UNAVAILABLE', `node ${node} is down`);
    const endpoint = hostPort(target.address, target.apiPort);
    try {
      return await (fast ? this.fastClients.call(node, endpoint, remote) : withClient(new WeftClient(endpoint, NODE_CALL_DEADLINE_MS), remote));
    } catch (err) {
      if (err instanceof WeftApiError) throw new WeftApiError(err.code, `node ${node}: ${err.message}`);
      throw err;
    }
  }

  /** Closes the clients it keeps open; calls after this still work, each with a client of its own. */
  close(): void {
    this.stopping.abort(new Error('weftd is stopping'));
    this.fastClients.close();
  }
}

/** The statuses a copy refuses a control operation with, as the kinds of a local refusal. */
const COPY_REFUSALS = new Map<status, ErrorKind>([
  [status.NOT_FOUND, 'NOT_FOUND'],
  [status.ALREADY_EXISTS, 'ALREADY_EXISTS'],
  [status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
  [status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED'],
  [status.FAILED_PRECONDITION, 'FAILED_PRECONDITION'],
]);

export function isNotFound(err: Error): boolean {
  return (err instanceof WeftError && err.kind === 'NOT_FOUND') || (err instanceof WeftApiError && err.code === status.NOT_FOUND);
}

/** Refused because something has the volume open (a client, a connection, a verify). */
function isInUse(err: unknown): boolean {
  return err instanceof InUseError;
}

/** The node could not be asked (down, or not answering). */
function isUnavailable(err: Error): boolean {
  return (err instanceof WeftError && err.kind === 'UNAVAILABLE') || (err instanceof WeftApiError && (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED));
}

/**
 * A node that is down cannot have the copy open, nor can one that holds none (a replacement named in
 * the record before its copy was made, which failed); any other refusal stands.
 */
function skipDownOrNoCopy(err: unknown): void {
  if ((err instanceof WeftError && err.kind === 'UNAVAILABLE') || (err instanceof Error && isNotFound(err))) return;
  throw err;
}

/** The CreateVolume request's replica count: 0 (unset) and 1 mean one copy, on this node. */
export function replicaCount(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_REPLICAS) throw invalidArgument(`replicas must be a whole number from 1 to ${MAX_REPLICAS}, not ${value}`);
  return Math.max(1, value);
}
