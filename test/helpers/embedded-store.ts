// A real embedded cluster store for tests that run the cluster's logic against a store without a
// daemon, and a view of it whose calls a test replaces (answers lost, calls refused).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { ClusterStore } from '../../fabric/cluster/cluster-store';
import { EmbeddedStore } from '../../fabric/cluster/embedded-store';

/** A new empty store in a temp dir before each test of the enclosing block, closed and removed after it; returns a getter for it. */
export function freshEmbeddedStore(): () => EmbeddedStore {
  let dir: string;
  let store: EmbeddedStore;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-store-test-'));
    store = await EmbeddedStore.open(dir, pino({ level: 'silent' }));
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => store;
}

/** The store, with the calls named in `calls` made by them instead (each may call the store itself). */
export function withCalls(store: ClusterStore, calls: Partial<ClusterStore>): ClusterStore {
  return new Proxy(store, {
    get: (target, prop, receiver) => (prop in calls ? calls[prop as keyof ClusterStore] : (Reflect.get(target, prop, receiver) as unknown)),
  });
}
