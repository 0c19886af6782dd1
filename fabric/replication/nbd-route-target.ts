// A RouteTarget over NBD: a forwarding node's connection to the volume's export on the primary's
// node (see forwarding-device.ts). Closing it fails what is still in flight on it.

import { NbdClient, type NbdClientOptions } from '../nbd/client';
import type { RouteTarget } from './forwarding-device';

/** Connects to the export; rejects (ExportRefusedError, a socket error) if it cannot be opened. */
export async function connectNbdRoute(options: NbdClientOptions): Promise<RouteTarget> {
  return routeOver(await NbdClient.connect(options));
}

/** Connects to the first of the export's names that the server knows (NbdClient.connectFirstKnown). */
export async function connectNbdRouteFirstKnown(options: Omit<NbdClientOptions, 'exportName'>, exportNames: readonly string[]): Promise<RouteTarget> {
  return routeOver(await NbdClient.connectFirstKnown(options, exportNames));
}

function routeOver(client: NbdClient): RouteTarget {
  return {
    read: (offsetBytes, lengthBytes) => client.read(offsetBytes, lengthBytes),
    write: (offsetBytes, data, fua) => client.write(offsetBytes, data, fua),
    flush: () => client.flush(),
    trim: (offsetBytes, lengthBytes, fua) => client.trim(offsetBytes, lengthBytes, fua),
    writeZeroes: (offsetBytes, lengthBytes, options) => client.writeZeroes(offsetBytes, lengthBytes, options.fua, options.noHole),
    // The client does not speak BLOCK_STATUS: the range is reported as allocated data, which is
    // always a correct answer (a client then reads it rather than skipping it).
    blockStatus: (_offsetBytes, lengthBytes) => Promise.resolve([{ lengthBytes, hole: false, zero: false }]),
    close: () => client.close(),
  };
}
