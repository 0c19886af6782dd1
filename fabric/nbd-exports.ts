// The node's NBD exports, and the only place that knows their names: every volume as VOL, every
// snapshot as VOL@SNAP, plus VOL~growable, the volume in a window of fixed size for attachments
// that must see it grow without reconnecting (see volume/growable-device.ts), and VOL~epoch=N, the
// volume for a primary that replicates to this node at epoch N (fenced: volume/epoch-fence.ts;
// then ~from=F.G: that primary's connection of generation G, fenced by its newer ones as a
// forwarder's are), and VOL~primary, a replicated volume's service on its primary, which other nodes forward to
// (VOL~primary-after=N: only if it serves at an epoch above N; then ~create=ID: only if the volume
// it serves is the one made by the create ID, not another made since under the name; then ~from=F.G:
// the forwarder F's connection of generation G, fenced by newer ones: replication/forwarder-fence.ts;
// then ~by=NODE: the forwarder's node, whose changes are refused while the volume's attach claim
// names another: replication/claim-fence.ts).
// The engine sees volume and snapshot names only. The NBD server sees only this ExportProvider.

import { invalidArgument, WeftError } from './errors';
import { isValidName } from './volume/names';
import type { ExportProvider, NbdExport, OpenPurpose } from './nbd/export-provider';
import { ClaimFencedDevice } from './replication/claim-fence';
import { ForwarderFence, type ForwarderConnection } from './replication/forwarder-fence';
import type { BlockDevice } from './volume/block-device';
import { GrowableDevice } from './volume/growable-device';
import type { OpenDevice, VolumeEngine } from './volume/types';
import type { VolumeRef } from './volume/volume';

/** Appended to a volume's name (never to a snapshot's) to export it through the growable window. */
export const GROWABLE_SUFFIX = '~growable';

/** Appended to a volume's name, with the epoch after it, by a primary replicating to this node. */
const EPOCH_MARK = '~epoch=';

/** Appended to a replicated volume's name by a node that forwards its clients' I/O to the primary. */
const PRIMARY_SUFFIX = '~primary';
/** The same, with an epoch after it: served only by a primary at a newer epoch. */
const PRIMARY_AFTER_MARK = '~primary-after=';

/** Appended to the primary's export name by a forwarder: the createId of the volume it serves. */
const CREATE_MARK = '~create=';

/** Appended to the primary's export name by a forwarder: which one, and the generation of the connection. */
const FROM_MARK = '~from=';

/** Appended last to the primary's export name by a forwarder: the node it runs on. */
const BY_MARK = '~by=';

/** Which primary a forwarder asks for (see primaryExportName). */
export interface PrimaryRequest {
  /** Only a primary serving at an epoch above this. */
  afterEpoch?: number;
  /** Only the volume made by this create (VolumeRecord.createId). */
  createId?: string;
  /** For this connection of a forwarder. */
  from?: ForwarderConnection;
  /** For a forwarder on this node (with from). */
  by?: string;
}

/** The primary's service of a volume, for what the request names. */
export function primaryExportName(volume: string, request: PrimaryRequest = {}): string {
  const { afterEpoch, createId, from, by } = request;
  if (by !== undefined && !from) throw new Error(`a primary export name names the forwarder's node only after its connection (${FROM_MARK}F.G)`);
  let name = afterEpoch === undefined ? `${volume}${PRIMARY_SUFFIX}` : `${volume}${PRIMARY_AFTER_MARK}${afterEpoch}`;
  if (createId !== undefined) name += `${CREATE_MARK}${createId}`;
  if (from) name += `${FROM_MARK}${from.forwarder}.${from.generation}`;
  return by !== undefined ? `${name}${BY_MARK}${by}` : name;
}

/** What the cluster serves of replicated volumes (cluster/volume-controller.ts). */
export interface ClusterExports {
  /** This node's id. */
  readonly self: string;
  /**
   * The primary's service of the volume, while this node is its primary (at an epoch above
   * afterEpoch, and of the volume made by the create createId, if given).
   */
  primaryExport(volume: string, afterEpoch?: number, createId?: string): BlockDevice | undefined;
  /** This node's copy of a volume deleted from the cluster, not dropped yet: opened as if it did not exist. */
  retired(volume: string): boolean;
  /**
   * This node's copy of a volume that no longer names this node, not dropped yet: its snapshots are
   * not served (the volume's are on its copies' nodes; one deleted there stays here until the drop).
   */
  replaced(volume: string): boolean;
  /** The names of the cluster's volumes, as this node last read them. */
  volumeNames(): string[];
  /** The snapshot the volume's record marks as being taken (cluster/volume-record.ts): not listed, as last read. */
  snapshotting(volume: string): string | undefined;
  /** The same, read from the store now if the last read has one: not served. */
  snapshottingNow(volume: string): Promise<string | undefined>;
  /** A replicated volume this node holds no copy of (or only one being dropped), forwarded to its primary. */
  remoteExport(volume: string): (BlockDevice & { close(): void }) | undefined;
  /** The node the volume's attach claim names (cluster/attach-claims.ts), if any: as last read, and read now. */
  attachedNode(volume: string): string | undefined;
  attachedNodeNow(volume: string): Promise<string | undefined>;
}

/**
 * The export a primary at epoch opens to replicate a volume to a node; from: which primary (random,
 * for its life) and the generation of the connection, fenced by newer ones as a forwarder's are.
 */
export function replicationExportName(volume: string, epoch: number, from?: ForwarderConnection): string {
  const name = `${volume}${EPOCH_MARK}${epoch}`;
  return from ? `${name}${FROM_MARK}${from.forwarder}.${from.generation}` : name;
}

/** The export name of a volume or snapshot; also the `volume` label of its metrics. */
export function exportName(ref: VolumeRef): string {
  return ref.snapshot === undefined ? ref.volume : `${ref.volume}@${ref.snapshot}`;
}

/** Every export name that exists, for NBD_OPT_LIST and for dropping the series of deleted ones. */
export function exportNames(engine: VolumeEngine): string[] {
  const { volumes, snapshots } = engine.listNames();
  return [...volumes, ...snapshots.map(exportName)];
}

export class EngineExports implements ExportProvider {
  private readonly forwarders = new ForwarderFence();
  /**
   * A primary's connections to this node's copies, fenced by generation for the same reason: a
   * request the primary gave up on (a timeout) may wait unread in this node's socket buffer (this
   * node was stopped, or slow) and run after the primary's next connection copied newer data.
   */
  private readonly primaries = new ForwarderFence();

  constructor(private readonly engine: VolumeEngine, private readonly cluster?: ClusterExports) {}

  /**
   * What NBD_OPT_LIST shows: volumes and snapshots, and the cluster's volumes this node holds no
   * copy of (served here too); not a retired copy, a replaced copy's snapshots, a snapshot being
   * taken, nor the growable views.
   */
  names(): string[] {
    const cluster = this.cluster;
    if (!cluster) return exportNames(this.engine);
    const volumes = cluster.volumeNames();
    const unlisted = new Set(volumes.flatMap((volume) => [cluster.snapshotting(volume)].flatMap((snapshot) => (snapshot === undefined ? [] : [exportName({ volume, snapshot })]))));
    const own = exportNames(this.engine).filter((name) => {
      const ref = parseExportName(name);
      return !cluster.retired(name) && !unlisted.has(name) && !(ref.snapshot !== undefined && cluster.replaced(ref.volume));
    });
    return [...new Set([...own, ...volumes])];
  }

  /**
   * Throws INVALID_ARGUMENT for a malformed replication name, FAILED_PRECONDITION for an epoch older
   * than the volume's. A newer epoch is first made the volume's own (durably), as a new primary
   * raises the epoch on the replicas before it serves.
   */
  async open(name: string, peer: { address: string; port: number }, purpose: OpenPurpose): Promise<NbdExport | undefined> {
    if (name.includes(EPOCH_MARK)) return this.openReplication(name, `${peer.address}:${peer.port}`, purpose);
    const primary = parsePrimaryName(name);
    if (primary) return this.openPrimary(primary.volume, primary, purpose);
    const growable = name.endsWith(GROWABLE_SUFFIX);
    const ref = parseExportName(growable ? name.slice(0, -GROWABLE_SUFFIX.length) : name);
    if (growable && ref.snapshot !== undefined) return undefined; // snapshots do not grow
    // A snapshot being taken (or cut short): not one yet, and a client would keep it from being deleted.
    if (ref.snapshot !== undefined && (await this.cluster?.snapshottingNow(ref.volume)) === ref.snapshot) return undefined;
    if (ref.snapshot !== undefined && this.cluster?.replaced(ref.volume)) return undefined;
    const device = this.openDevice(ref, `${peer.address}:${peer.port}`);
    if (!device) return undefined;
    const window: BlockDevice = growable ? new GrowableDevice(device) : device;
    // This node's own clients, fenced as the primary fences the ones other nodes forward: a claim of
    // another node stops them, also where this node serves the volume itself (its primary).
    const served = this.cluster && ref.snapshot === undefined ? this.claimFenced(window, ref.volume, this.cluster.self, false) : window;
    return {
      device: served,
      close: () => device.close(),
      abandon: () => device.abandon?.(),
    };
  }

  /**
   * Undefined (refused) also for a forwarder's connection older than one it has opened since. Only a
   * connection to be served is admitted: NBD_OPT_INFO is a question, and an admitted generation
   * would fence the forwarder's live connection.
   */
  private openPrimary(volume: string, { afterEpoch, createId, from, by }: PrimaryRequest, purpose: OpenPurpose): NbdExport | undefined {
    const primary = this.cluster?.primaryExport(volume, afterEpoch, createId);
    if (!primary) return undefined;
    const claimFenced = (device: BlockDevice) => (by === undefined ? device : this.claimFenced(device, volume, by));
    if (from && purpose === 'serve') return this.forwarders.admit(volume, from, primary, by, claimFenced);
    return { device: claimFenced(primary), close: () => undefined };
  }

  /** The nodes that forward to this node, the volume's primary, with a connection open now. */
  forwardedFrom(volume: string): string[] {
    return this.forwarders.connected(volume);
  }

  /** The device, its changes refused while the volume's attach claim names another node than `node`. */
  private claimFenced(device: BlockDevice, volume: string, node: string, forwarded = true): BlockDevice {
    const cluster = this.cluster as ClusterExports;
    return new ClaimFencedDevice(device, volume, node, { holder: () => cluster.attachedNode(volume), holderNow: () => cluster.attachedNodeNow(volume) }, forwarded);
  }

  /** Only a connection to be served raises the epoch: NBD_OPT_INFO is a question. */
  private async openReplication(name: string, peer: string, purpose: OpenPurpose): Promise<NbdExport | undefined> {
    const fromAt = name.indexOf(FROM_MARK);
    const from = fromAt < 0 ? undefined : parseFrom(name, name.slice(fromAt + FROM_MARK.length));
    const { volume, epoch } = parseMarkedName(fromAt < 0 ? name : name.slice(0, fromAt), EPOCH_MARK, 'replication');
    try {
      if (purpose === 'serve' && epoch > this.engine.getVolume(volume).epoch) await this.engine.raiseEpoch(volume, epoch);
      const device = this.engine.openVolume(volume, { peer, epoch, purpose: `replication at epoch ${epoch}` });
      if (!from || purpose !== 'serve') return { device, close: () => device.close() };
      const admitted = this.primaries.admit(volume, from, device);
      if (!admitted) {
        device.close();
        return undefined;
      }
      const close = () => {
        admitted.close();
        device.close();
      };
      return { device: admitted.device, close };
    } catch (error) {
      if (error instanceof WeftError && error.kind === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private openDevice(ref: VolumeRef, peer: string): OpenDevice | undefined {
    // A copy being dropped (its volume deleted, or the copy replaced elsewhere): a new client pinning
    // it would keep it from being dropped. A volume that lives on is forwarded to its primary meanwhile.
    if (ref.snapshot === undefined && this.cluster?.retired(ref.volume)) return this.cluster.remoteExport(ref.volume);
    try {
      if (ref.snapshot === undefined) return this.engine.openVolume(ref.volume, { peer });
      return this.engine.openSnapshot(ref.volume, ref.snapshot, { peer });
    } catch (error) {
      if (error instanceof WeftError && error.kind === 'NOT_FOUND') return ref.snapshot === undefined ? this.cluster?.remoteExport(ref.volume) : undefined;
      throw error;
    }
  }
}

/** VOL or VOL@SNAP (names never contain '@': names.ts). */
export function parseExportName(name: string): VolumeRef {
  const at = name.indexOf('@');
  return at < 0 ? { volume: name } : { volume: name.slice(0, at), snapshot: name.slice(at + 1) };
}

/** VOL~primary or VOL~primary-after=N, then optionally ~create=ID, then ~from=F.G, then ~by=NODE; undefined for any other name. */
function parsePrimaryName(name: string): ({ volume: string } & PrimaryRequest) | undefined {
  const byAt = name.indexOf(BY_MARK);
  const by = byAt < 0 ? undefined : parseBy(name, name.slice(byAt + BY_MARK.length));
  const fromAt = name.indexOf(FROM_MARK);
  let rest = fromAt < 0 ? name.slice(0, byAt < 0 ? name.length : byAt) : name.slice(0, fromAt);
  const from = fromAt < 0 ? undefined : parseFrom(name, name.slice(fromAt + FROM_MARK.length, byAt < 0 ? name.length : byAt));
  const createAt = rest.indexOf(CREATE_MARK);
  const createId = createAt < 0 ? undefined : parseCreateId(name, rest.slice(createAt + CREATE_MARK.length));
  if (createAt >= 0) rest = rest.slice(0, createAt);
  if (by !== undefined && !from) throw invalidArgument(`malformed primary export name ${JSON.stringify(name)}: ${BY_MARK} follows ${FROM_MARK}F.G`);
  if (rest.endsWith(PRIMARY_SUFFIX)) return { volume: rest.slice(0, -PRIMARY_SUFFIX.length), createId, from, by };
  if (rest.includes(PRIMARY_AFTER_MARK)) {
    const { volume, epoch } = parseMarkedName(rest, PRIMARY_AFTER_MARK, 'primary');
    return { volume, afterEpoch: epoch, createId, from, by };
  }
  if (from || createId !== undefined) {
    throw invalidArgument(`malformed primary export name ${JSON.stringify(name)}: ${CREATE_MARK} and ${FROM_MARK} follow VOLUME${PRIMARY_SUFFIX} or VOLUME${PRIMARY_AFTER_MARK}N`);
  }
  return undefined;
}

/** A node's name. */
function parseBy(name: string, text: string): string {
  if (!isValidName(text)) throw invalidArgument(`malformed primary export name ${JSON.stringify(name)}: expected ${BY_MARK}NODE, NODE a node's name`);
  return text;
}

/** A createId as creates make them (a UUID): 1-64 hex digits and dashes. */
function parseCreateId(name: string, text: string): string {
  if (!/^[0-9a-f-]{1,64}$/.test(text)) throw invalidArgument(`malformed primary export name ${JSON.stringify(name)}: expected ${CREATE_MARK}ID, ID hex digits and dashes`);
  return text;
}

/** F.G: F 1-32 hex digits, G a non-negative integer. */
function parseFrom(name: string, text: string): ForwarderConnection {
  const match = /^([0-9a-f]{1,32})\.(0|[1-9][0-9]{0,14})$/.exec(text);
  if (!match) throw invalidArgument(`malformed export name ${JSON.stringify(name)}: expected ${FROM_MARK}F.G, F hex digits, G a non-negative integer`);
  return { forwarder: match[1], generation: Number(match[2]) };
}

/** VOL followed by mark and N (VOL~epoch=N, VOL~primary-after=N), N a non-negative integer in decimal without leading zeroes. */
function parseMarkedName(name: string, mark: string, kind: string): { volume: string; epoch: number } {
  const at = name.indexOf(mark);
  const digits = name.slice(at + mark.length);
  const epoch = Number(digits);
  if (at === 0 || !/^(0|[1-9][0-9]*)$/.test(digits) || !Number.isSafeInteger(epoch)) {
    throw invalidArgument(`malformed ${kind} export name ${JSON.stringify(name)}: expected VOLUME${mark}N, N a non-negative integer`);
  }
  return { volume: name.slice(0, at), epoch };
}
