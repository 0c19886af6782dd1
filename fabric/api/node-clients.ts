// Clients of other nodes' control API kept open, for the calls on a write's path (a primary's
// activity notices to its copies). A client made for each call costs a TCP connection and an HTTP/2
// handshake every time; in a 1 MiB sequential fill of a fresh 2-replica volume, where every 4 MiB
// extent waits for one notice, that was a third of the notice's round trip.
//
// A client whose call failed for want of the node (UNAVAILABLE, DEADLINE_EXCEEDED) is dropped: the
// next call connects afresh instead of waiting out the channel's reconnect backoff.

import * as grpc from '@grpc/grpc-js';
import { WeftApiError, WeftClient } from './client';

const TRANSPORT_FAILURES: ReadonlySet<grpc.status> = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);

export class NodeClients {
  /** By node: the client of its endpoint as last used. */
  private readonly clients = new Map<string, WeftClient>();
  private closed = false;

  /** deadlineMs: each call fails with DEADLINE_EXCEEDED after this long. */
  constructor(private readonly deadlineMs: number) {}

  /** Runs call with the node's client at endpoint (a new one if the node moved, or after close()). */
  async call<T>(node: string, endpoint: string, call: (client: WeftClient) => Promise<T>): Promise<T> {
    if (this.closed) return withClient(new WeftClient(endpoint, this.deadlineMs), call);
    let client = this.clients.get(node);
    if (client?.endpoint !== endpoint) {
      client?.close();
      client = new WeftClient(endpoint, this.deadlineMs);
      this.clients.set(node, client);
    }
    try {
      return await call(client);
    } catch (err) {
      if (err instanceof WeftApiError && TRANSPORT_FAILURES.has(err.code) && this.clients.get(node) === client) {
        this.clients.delete(node);
        client.close();
      }
      throw err;
    }
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/** Runs call with client, then closes it. */
export async function withClient<T>(client: WeftClient, call: (client: WeftClient) => Promise<T>): Promise<T> {
  try {
    return await call(client);
  } finally {
    client.close();
  }
}
