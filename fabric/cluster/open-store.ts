// Which cluster store a node uses (--store): "embedded", or "etcd://HOST:PORT[,HOST:PORT...]".
// The etcd client is loaded only when asked for, so that a single node starts without it.

import net from 'node:net';
import type { Logger } from '../logger';
import type { ClusterStore } from './cluster-store';

export type StoreSpec = { kind: 'embedded' } | { kind: 'etcd'; endpoints: string[] };

/** Throws an Error whose message says what is expected. */
export function parseStoreSpec(text: string): StoreSpec {
  if (text === 'embedded') return { kind: 'embedded' };
  const usage = 'expected "embedded" or etcd://HOST:PORT[,HOST:PORT...], e.g. etcd://10.0.0.1:2379,10.0.0.2:2379';
  const match = /^etcd:\/\/(.+)$/.exec(text);
  if (!match) throw new Error(usage);
  const endpoints = match[1].split(',');
  for (const endpoint of endpoints) {
    // A host name, an IPv4 address, or an IPv6 address in brackets.
    const parsed = /^(?:\[([^\]]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(endpoint);
    const port = Number(parsed?.[3]);
    if (!parsed || (parsed[1] !== undefined && !net.isIPv6(parsed[1])) || port < 1 || port > 65535) {
      throw new Error(`"${endpoint}" is not HOST:PORT; ${usage}`);
    }
  }
  if (new Set(endpoints).size !== endpoints.length) throw new Error(`an endpoint is given twice; ${usage}`);
  return { kind: 'etcd', endpoints };
}

/** Opens the store: the embedded one in dataDir (which the caller has locked), or a connection to etcd. */
export async function openClusterStore(spec: StoreSpec, dataDir: string, logger: Logger): Promise<ClusterStore> {
  if (spec.kind === 'embedded') {
    const { EmbeddedStore } = await import('./embedded-store');
    return EmbeddedStore.open(dataDir, logger);
  }
  const { EtcdStore, revokesLeasesAfterLeaderStall } = await import('./etcd-store');
  const store = await EtcdStore.open(spec.endpoints);
  const version = await store.version().catch(() => undefined);
  if (version !== undefined && revokesLeasesAfterLeaderStall(version)) {
    logger.warn(
      { etcdVersion: version },
      `etcd ${version} revokes every lease when a leader that stalled for longer than a lease (3 s) wakes (etcd issue 15247): ` +
        'nodes then show down and their primaries fail over. Upgrade etcd to 3.4.31, 3.5.13 or later',
    );
  }
  return store;
}
