// What the NBD server needs from the node: names to list and devices to serve. The server knows
// nothing about volumes, snapshots or replication.

import type { BlockDevice } from '../volume/block-device';

export interface NbdExport {
  /** What the connection reads and writes; its capability answers become the transmission flags. */
  device: BlockDevice;
  /** Called once when the connection using this export ends, after its last request settled. */
  close(): void;
  /**
   * Called once if the client drops the connection without NBD_CMD_DISC (a hard disconnect) while
   * requests are still in flight: no one will read their replies (close() follows once they settle).
   */
  abandon?(): void;
}

/** Why an export is opened: to serve a connection, or only to answer NBD_OPT_INFO about it (nothing may change then). */
export type OpenPurpose = 'serve' | 'info';

export interface ExportProvider {
  names(): string[];
  /**
   * Returns undefined when no such export exists. May throw (or reject with) a WeftError that
   * refuses the name: INVALID_ARGUMENT (malformed) or FAILED_PRECONDITION (not allowed now); the
   * client is told its message.
   */
  open(name: string, peer: { address: string; port: number }, purpose: OpenPurpose): NbdExport | undefined | Promise<NbdExport | undefined>;
}
