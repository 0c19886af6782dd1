// The Consul services one weftd stands for: its NBD server, control API and metrics endpoint, each
// with a health check the Consul agent runs against the advertised address (TCP for NBD and the API,
// an HTTP GET of /healthz for metrics), in the shape the `consul` client's agent.service.register takes.

import { reachableAddress } from '../../fabric/api/node-info';

export type ServiceKind = 'nbd' | 'api' | 'metrics';

/** What a node's services are made of. */
export interface NodeEndpoints {
  nodeId: string;
  version: string;
  zone?: string;
  /** Where the Consul agent and clients reach the node (weftd --advertise). */
  address: string;
  /** metrics 0: metrics are off, no weft-metrics service. */
  ports: Record<ServiceKind, number>;
}

/** One service, as agent.service.register takes it (the client turns the keys into Consul's ID, Name, Check.TCP...). */
export interface ServiceRegistration {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  check: { name: string; tcp?: string; http?: string; interval: string; timeout: string; deregistercriticalserviceafter: string };
}

/**
 * The check timings. Consul drops a service whose check stays critical for 30 minutes (a node that
 * died without deregistering): until then Prometheus keeps scraping it as a target that is down, so
 * WeftdDown (up == 0 for 2 minutes) fires; dropped sooner, the target would vanish before it did.
 */
const CHECK_TIMING = { interval: '10s', timeout: '5s', deregistercriticalserviceafter: '30m' };

const KINDS: readonly ServiceKind[] = ['nbd', 'api', 'metrics'];

export const serviceName = (kind: ServiceKind) => `weft-${kind}`;
export const serviceId = (kind: ServiceKind, nodeId: string) => `weft-${kind}-${nodeId}`;

export function weftServices(node: NodeEndpoints): ServiceRegistration[] {
  const tags = [`node=${node.nodeId}`, ...(node.zone === undefined ? [] : [`zone=${node.zone}`])];
  // Meta keys become Prometheus' __meta_consul_service_metadata_<key>: letters, digits and '_'.
  const meta = { node_id: node.nodeId, version: node.version, ...(node.zone === undefined ? {} : { zone: node.zone }) };
  return KINDS.filter((kind) => node.ports[kind] !== 0).map((kind) => {
    const target = reachableAddress(node.address, node.ports[kind]);
    const probe = kind === 'metrics' ? { http: `http://${target}/healthz` } : { tcp: target };
    return {
      id: serviceId(kind, node.nodeId),
      name: serviceName(kind),
      tags,
      address: node.address,
      port: node.ports[kind],
      meta,
      check: { name: `${serviceName(kind)} on ${node.nodeId}`, ...probe, ...CHECK_TIMING },
    };
  });
}
