// The node's NBD exports, and the only place that knows their names: every volume as VOL, every
// snapshot as VOL@SNAP, plus VOL~growable, the volume in a window of fixed size for attachments
// that must see it grow without reconnecting (see volume/growable-device.ts). The engine sees
// volume and snapshot names only. The NBD server sees only this ExportProvider.

import { WeftError } from './errors';
import type { ExportProvider, NbdExport } from './nbd/export-provider';
import type { BlockDevice } from './volume/block-device';
import { GrowableDevice } from './volume/growable-device';
import type { OpenDevice, VolumeEngine } from './volume/types';
import type { VolumeRef } from './volume/volume';

/** Appended to a volume's name (never to a snapshot's) to export it through the growable window. */
export const GROWABLE_SUFFIX = '~growable';

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
  constructor(private readonly engine: VolumeEngine) {}

  /** What NBD_OPT_LIST shows: volumes and snapshots; the growable views are not listed. */
  names(): string[] {
    return exportNames(this.engine);
  }

  open(name: string, peer: { address: string; port: number }): NbdExport | undefined {
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

  private openDevice(ref: VolumeRef, peer: string): OpenDevice | undefined {
    try {
      if (ref.snapshot === undefined) return this.engine.openVolume(ref.volume, { peer });
      return this.engine.openSnapshot(ref.volume, ref.snapshot, { peer });
    } catch (error) {
      if (error instanceof WeftError && error.kind === 'NOT_FOUND') return undefined;
      throw error;
    }
  }
}

/** VOL or VOL@SNAP (names never contain '@': names.ts). */
export function parseExportName(name: string): VolumeRef {
  const at = name.indexOf('@');
  return at < 0 ? { volume: name } : { volume: name.slice(0, at), snapshot: name.slice(at + 1) };
}
