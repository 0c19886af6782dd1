// The Prometheus exporter as a weftd plugin: weftd.ts loads it unless --metrics-port is off, and it
// serves the node's telemetry at /metrics, with /healthz and /readyz, on --listen:--metrics-port.

import type { DaemonPlugin, PluginContext, StartedPlugin } from '../../fabric/daemon';
import { listen } from '../../fabric/listen';
import { telemetryRegistry } from './registry';
import { MetricsServer } from './server';

export function prometheusPlugin(port: number): DaemonPlugin {
  return { name: 'metrics', start: (context) => startExporter(port, context) };
}

async function startExporter(port: number, { config, logger, telemetry }: PluginContext): Promise<StartedPlugin> {
  const server = new MetricsServer(telemetryRegistry(telemetry), telemetry, logger);
  const metricsPort = await listen('metrics', config.listen, port, () => server.listen(config.listen, port));
  logger.debug({ port: metricsPort }, 'serving /metrics, /healthz and /readyz');
  return { metricsPort, stop: () => server.close() };
}
