// A real weftd holding one volume as a replica, for replication tests: the volume created over the
// API, and NBD connections to it at an epoch, as a primary makes them.

import { NbdClient } from '../../fabric/nbd/client';
import { replicationExportName } from '../../fabric/nbd-exports';
import type { RemoteReplica } from '../../fabric/replication/remote-replica';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startWeftd, type WeftdHandle } from './weftd';

export class ReplicaNode {
  private readonly clients = new Set<NbdClient>();

  private constructor(readonly id: string, readonly node: WeftdHandle, readonly volume: string) {}

  static async start(id: string, volume: string, sizeBytes: number): Promise<ReplicaNode> {
    const node = await startWeftd();
    const created = await node.weft(['volume', 'create', volume, '--size', String(sizeBytes)]);
    if (created.code !== 0) throw new Error(`volume create failed: ${created.stderr}`);
    return new ReplicaNode(id, node, volume);
  }

  /** An NBD connection to the volume at epoch (to the node's current port: it changes on restart). */
  async connect(epoch: number, timeoutMs?: number): Promise<NbdClient> {
    const client = await NbdClient.connect({ host: '127.0.0.1', port: this.node.nbdPort, exportName: replicationExportName(this.volume, epoch), timeoutMs });
    this.clients.add(client);
    return client;
  }

  /** This node as a primary at epoch sees it. */
  remote(epoch: number, timeoutMs = 2000): RemoteReplica {
    return { id: this.id, connect: () => this.connect(epoch, timeoutMs) };
  }

  async show(): Promise<VolumeInfo> {
    const shown = await this.node.weft(['volume', 'show', this.volume, '--output', 'json']);
    if (shown.code !== 0) throw new Error(`volume show failed: ${shown.stderr}`);
    return JSON.parse(shown.stdout) as VolumeInfo;
  }

  /** Reads the whole volume (or its first lengthBytes) through a new connection at epoch. */
  async readAll(epoch: number, lengthBytes: number): Promise<Buffer> {
    const client = await this.connect(epoch);
    try {
      return await readInPieces((offset, length) => client.read(offset, length), lengthBytes);
    } finally {
      client.close();
    }
  }

  /** Closes the connections this helper opened. */
  closeClients(): void {
    for (const client of this.clients) client.close();
    this.clients.clear();
  }
}

/** Reads lengthBytes from offset 0 in 4 MiB requests. */
export async function readInPieces(read: (offsetBytes: number, lengthBytes: number) => Promise<Buffer>, lengthBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < lengthBytes; at += 4 << 20) parts.push(Buffer.from(await read(at, Math.min(4 << 20, lengthBytes - at))));
  return Buffer.concat(parts);
}
