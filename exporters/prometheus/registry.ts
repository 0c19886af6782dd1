// The registry one weftd serves at /metrics: Node.js' process metrics (prom-client's defaults) and
// weft's families, all read from the node's telemetry at scrape time.

import { collectDefaultMetrics, Registry } from 'prom-client';
import type { NodeTelemetry } from '../../fabric/telemetry';
import { register } from './family';
import { nodeFamilies } from './node-families';
import { replicaFamilies } from './replica-families';
import { volumeFamilies, workloadFamilies } from './volume-families';

export function telemetryRegistry(telemetry: NodeTelemetry): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  register(registry, [...volumeFamilies(telemetry), ...workloadFamilies(telemetry), ...nodeFamilies(telemetry), ...replicaFamilies(telemetry)]);
  return registry;
}
