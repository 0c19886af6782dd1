// A RouteTarget over NBD: a forwarding node's connection to the volume's export on the primary's
// node (see forwarding-device.ts). Closing it fails what is still in flight on it.

import { ExportRefusedError, NbdClient, type NbdClientOptions } from '../nbd/client';
import { REP_ERR_INVALID } from '../nbd/protocol';
import type { RouteTarget } from './forwarding-device';

/** Connects to the export; rejects (ExportRefusedError, a socket error) if it cannot be opened. */
export async function connectNbdRoute(options: NbdClientOptions): Promise<RouteTarget> {
  return routeOver(await NbdClient.connect(options));
}

/**
 * Connects to the first of the export's names, newest form first, that the server does not refuse
 * as malformed (NBD_REP_ERR_INVALID): a node of an older version refuses a name with a mark it does
 * not know. Any other refusal is the answer.
 */
export async function connectNbdRouteFirstKnown(options: Omit<NbdClientOptions, 'exportName'>, exportNames: readonly string[]): Promise<RouteTarget> {
  for (let i = 0; ; i++) {
    try {
      return routeOver(await NbdClient.connect({ ...options, exportName: exportNames[i] }));
    } catch (err) {
      const malformed = err instanceof ExportRefusedError && err.replyType === REP_ERR_INVALID;
      if (!malformed || i === exportNames.length - 1) throw err;
    }
  }
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
