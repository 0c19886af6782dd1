// The node's NBD exports, and the only place that knows their names: every volume as VOL, every
// snapshot as VOL@SNAP, plus VOL~growable, the volume in a window of fixed size for attachments
// that must see it grow without reconnecting (see volume/growable-device.ts), and VOL~epoch=N, the
// volume for a primary that replicates to this node at epoch N (fenced: volume/epoch-fence.ts),
// and VOL~primary, a replicated volume's service on its primary, which other nodes forward to
// (VOL~primary-after=N: only if it serves at an epoch above N).
// The engine sees volume and snapshot names only. The NBD server sees only this ExportProvider.

import { invalidArgument, WeftError } from './errors';
import type { ExportProvider, NbdExport, OpenPurpose } from './nbd/export-provider';
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

/** The primary's service of a volume; with afterEpoch, only a primary serving at a newer epoch opens it. */
export function primaryExportName(volume: string, afterEpoch?: number): string {
  return afterEpoch === undefined ? `${volume}${PRIMARY_SUFFIX}` : `${volume}${PRIMARY_AFTER_MARK}${afterEpoch}`;
}

/** What the cluster serves of replicated volumes (cluster/volume-controller.ts). */
export interface ClusterExports {
  /** The primary's service of the volume, while this node is its primary (at an epoch above afterEpoch, if given). */
  primaryExport(volume: string, afterEpoch?: number): BlockDevice | undefined;
  /** A replicated volume this node holds no copy of, forwarded to its primary. */
  remoteExport(volume: string): (BlockDevice & { close(): void }) | undefined;
}

/** The export a primary at epoch opens to replicate a volume to a node. */
export function replicationExportName(volume: string, epoch: number): string {
  return `${volume}${EPOCH_MARK}${epoch}`;
}

/** The export name of a volume or snapshot; also the `volume` label of its metrics. */
export function exportName(ref: VolumeRef): string {
  return ref.snapshot === undefined ? ref.volume : `${ref.volume}@${ref.snapshot}`;
}

/** Every export name that exists, for NBD_OPT_LIST and for dropping the series of deleted ones. */
export function exportNames(engine: VolumeEngine): string[] {
  return [
    ...engine.listVolumes().map((v) => v.name),
    ...engine.listSnapshots().map((s) => exportName({ volume: s.volume, snapshot: s.name })),
  ];
}

export class EngineExports implements ExportProvider {
  constructor(private readonly engine: VolumeEngine, private readonly cluster?: ClusterExports) {}

  /** What NBD_OPT_LIST shows: volumes and snapshots; the growable views are not listed. */
  names(): string[] {
    return exportNames(this.engine);
  }

  /**
   * Throws INVALID_ARGUMENT for a malformed replication name, FAILED_PRECONDITION for an epoch older
   * than the volume's. A newer epoch is first made the volume's own (durably), as a new primary
   * raises the epoch on the replicas before it serves.
   */
  async open(name: string, peer: { address: string; port: number }, purpose: OpenPurpose): Promise<NbdExport | undefined> {
    if (name.includes(EPOCH_MARK)) return this.openReplication(name, `${peer.address}:${peer.port}`, purpose);
    if (name.endsWith(PRIMARY_SUFFIX)) return this.openPrimary(name.slice(0, -PRIMARY_SUFFIX.length));
    if (name.includes(PRIMARY_AFTER_MARK)) {
      const { volume, epoch } = parseMarkedName(name, PRIMARY_AFTER_MARK, 'primary');
      return this.openPrimary(volume, epoch);
    }
    const growable = name.endsWith(GROWABLE_SUFFIX);
    const ref = parseExportName(growable ? name.slice(0, -GROWABLE_SUFFIX.length) : name);
    if (growable && ref.snapshot !== undefined) return undefined; // snapshots do not grow
    const device = this.openDevice(ref, `${peer.address}:${peer.port}`);
    if (!device) return undefined;
    const served: BlockDevice = growable ? new GrowableDevice(device) : device;
    return {
      device: served,
      close: () => device.close(),
    };
  }

  private openPrimary(volume: string, afterEpoch?: number): NbdExport | undefined {
    const device = this.cluster?.primaryExport(volume, afterEpoch);
    return device && { device, close: () => undefined };
  }

  /** Only a connection to be served raises the epoch: NBD_OPT_INFO is a question. */
  private async openReplication(name: string, peer: string, purpose: OpenPurpose): Promise<NbdExport | undefined> {
    const { volume, epoch } = parseMarkedName(name, EPOCH_MARK, 'replication');
    try {
      if (purpose === 'serve' && epoch > this.engine.getVolume(volume).epoch) await this.engine.raiseEpoch(volume, epoch);
      const device = this.engine.openVolume(volume, { peer, epoch, purpose: `replication at epoch ${epoch}` });
      return { device, close: () => device.close() };
    } catch (error) {
      if (error instanceof WeftError && error.kind === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private openDevice(ref: VolumeRef, peer: string): OpenDevice | undefined {
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
