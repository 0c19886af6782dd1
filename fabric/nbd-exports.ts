// The node's NBD exports: every volume and every snapshot (VOL@SNAP) of the engine, each device
// wrapped in the metrics layer. The NBD server sees only this ExportProvider.

import { WeftError } from './errors';
import type { ExportProvider, NbdExport } from './nbd/export-provider';
import { MetricsDevice, type VolumeMetrics } from './volume/metrics-device';
import type { OpenDevice, VolumeEngine } from './volume/types';

export class EngineExports implements ExportProvider {
  constructor(private readonly engine: VolumeEngine, private readonly metrics: VolumeMetrics) {}

  names(): string[] {
    return this.engine.exportNames();
  }

  open(name: string): NbdExport | undefined {
    const device = this.openDevice(name);
    if (!device) return undefined;
    return {
      device: new MetricsDevice(device, this.metrics.forVolume(name)),
      // The engine's flush makes every completed write of the volume durable, whichever connection made it.
      multiConn: true,
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
