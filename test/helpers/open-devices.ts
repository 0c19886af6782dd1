// Open handles on an engine's exports, kept across operations as NBD connections would be, until an
// operation that refuses connected exports needs one closed.

import { parseExportName } from '../../fabric/nbd-exports';
import type { OpenDevice, VolumeEngine } from '../../fabric/volume/types';

/** Opens VOL or VOL@SNAP, as an NBD client names them. */
export function openExport(engine: VolumeEngine, exportName: string): OpenDevice {
  const ref = parseExportName(exportName);
  return ref.snapshot === undefined ? engine.openVolume(ref.volume) : engine.openSnapshot(ref.volume, ref.snapshot);
}

export class OpenDevices {
  private readonly handles = new Map<string, OpenDevice>();

  /** engine() gives the engine of the moment (a test may reopen it). */
  constructor(private readonly engine: () => VolumeEngine) {}

  get(exportName: string): OpenDevice {
    let device = this.handles.get(exportName);
    if (!device) {
      device = openExport(this.engine(), exportName);
      this.handles.set(exportName, device);
    }
    return device;
  }

  close(exportName: string): void {
    this.handles.get(exportName)?.close();
    this.handles.delete(exportName);
  }

  closeAll(): void {
    for (const exportName of [...this.handles.keys()]) this.close(exportName);
  }
}
