// The node's NBD exports: every volume and every snapshot (VOL@SNAP) of the engine, each device
// wrapped in the metrics layer, plus VOL~growable, the volume in a window of fixed size for
// attachments that must see it grow without reconnecting (see volume/growable-device.ts).
// The NBD server sees only this ExportProvider.

import { WeftError } from './errors';
import type { ExportProvider, NbdExport } from './nbd/export-provider';
import type { BlockDevice } from './volume/block-device';
import { GrowableDevice } from './volume/growable-device';
import { MetricsDevice, type VolumeMetrics } from './volume/metrics-device';
import type { OpenDevice, VolumeEngine } from './volume/types';

/** Appended to a volume's name (never to a snapshot's) to export it through the growable window. */
export const GROWABLE_SUFFIX = '~growable';

export class EngineExports implements ExportProvider {
  constructor(private readonly engine: VolumeEngine, private readonly metrics: VolumeMetrics) {}

  /** What NBD_OPT_LIST shows: volumes and snapshots; the growable views are not listed. */
  names(): string[] {
    return this.engine.exportNames();
  }

  open(name: string): NbdExport | undefined {
    const growable = name.endsWith(GROWABLE_SUFFIX);
    const volumeName = growable ? name.slice(0, -GROWABLE_SUFFIX.length) : name;
    if (growable && volumeName.includes('@')) return undefined; // snapshots do not grow
    const device = this.openDevice(volumeName);
    if (!device) return undefined;
    const served: BlockDevice = growable ? new GrowableDevice(device) : device;
    return {
      device: new MetricsDevice(served, this.metrics.forVolume(volumeName)),
      close: () => device.close(),
    };
  }

  private openDevice(name: string): OpenDevice | undefined {
    try {
      return this.engine.open(name);
    } catch (error) {
      if (error instanceof WeftError && error.kind === 'NOT_FOUND') return undefined;
      throw error;
    }
  }
}
