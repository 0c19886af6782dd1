// A remote replica of a volume as the primary reaches it: an NBD connection to the volume on the
// replica's node, opened at the primary's epoch, so that the replica fences the primary once a
// newer one has reached it.

import { NbdClient } from '../nbd/client';
import { replicationExportName } from '../nbd-exports';
import type { ForwarderConnection } from './forwarder-fence';
import type { Pieces } from '../pieces';

/** The calls replication makes on a replica (NbdClient has them). */
export interface ReplicaConnection {
  /** The copy's size when the connection was made. */
  readonly sizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean, noHole: boolean): Promise<void>;
  close(): void;
}

export interface RemoteReplica {
  /** The replica's id in the in-sync set. */
  readonly id: string;
  connect(): Promise<ReplicaConnection>;
}

export interface NbdReplicaAddress {
  id: string;
  host: string;
  port: number;
  volume: string;
  /** The primary's epoch. */
  epoch: number;
  /** A request to the replica not answered within this fails it (default: NbdClient's). */
  timeoutMs?: number;
  /** A FLUSH or FUA request may take this long while the replica is alive (NbdClientOptions.durableTimeoutMs). */
  durableTimeoutMs?: number;
  /** Which primary, and the generation of this connection: the replica refuses an older one's requests once it has opened. */
  from?: ForwarderConnection;
}

/**
 * How long a copy's node may take to make writes durable (a FLUSH, a FUA write) while it answers
 * otherwise: an HDD pool with gigabytes to write back takes tens of seconds, and a copy cut off at
 * the usual request timeout would be dropped and resynced over and over under such a load.
 */
export const COPY_DURABLE_TIMEOUT_MS = 60_000;

/** A replica reached over NBD at VOL~epoch=N~from=F.G, or VOL~epoch=N on a node of an older version (a rolling upgrade: without the fence it lacks). */
export function nbdReplica(address: NbdReplicaAddress): RemoteReplica {
  const { volume, epoch, from } = address;
  const names = [replicationExportName(volume, epoch, from), ...(from ? [replicationExportName(volume, epoch)] : [])];
  return {
    id: address.id,
    connect: () => NbdClient.connectFirstKnown({ host: address.host, port: address.port, timeoutMs: address.timeoutMs, durableTimeoutMs: address.durableTimeoutMs }, names),
  };
}
