// Consul service registration as a weftd plugin, loaded with --consul-addr: registers the node's
// services (services.ts) with the Consul agent, and deregisters them when weftd stops cleanly. An agent
// that cannot be reached does not stop weftd: it logs a warning and tries again in the background.

import Consul from 'consul';
import type { HostPort } from '../../fabric/config';
import type { DaemonPlugin, PluginContext, StartedPlugin } from '../../fabric/daemon';
import type { Logger } from '../../fabric/logger';
import { weftServices, type ServiceRegistration } from './services';

/** Each call to the agent; the client (papi) honours this option, which its types do not declare. */
const REQUEST_TIMEOUT_MS = 5_000;
/** Waits between attempts while the agent cannot be reached: doubling from the first to the last. */
const FIRST_RETRY_MS = 1_000;
const LAST_RETRY_MS = 30_000;

export function consulPlugin(agent: HostPort): DaemonPlugin {
  return { name: 'consul', start: async (context) => startRegistration(agent, context) };
}

function startRegistration(agent: HostPort, { config, logger, ports, version }: PluginContext): StartedPlugin {
  const options = { host: agent.host.includes(':') ? `[${agent.host}]` : agent.host, port: agent.port, timeout: REQUEST_TIMEOUT_MS };
  const services = weftServices({ nodeId: config.nodeId, version, zone: config.zone, address: config.advertise, ports });
  const registration = new Registration(new Consul(options), services, logger.child({ agent: `${agent.host}:${agent.port}` }));
  registration.start();
  return { stop: () => registration.stop() };
}

/** Registers every service, retrying until all are; on stop, deregisters those that were. */
class Registration {
  private readonly registered = new Set<string>();
  private attempt: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly consul: Consul, private readonly services: ServiceRegistration[], private readonly logger: Logger) {}

  start(): void {
    this.attempt = this.registerAll(FIRST_RETRY_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.attempt; // a registration under way ends before its service is deregistered
    for (const id of this.registered) {
      try {
        await this.consul.agent.service.deregister(id);
        this.logger.info({ service: id }, 'deregistered from Consul');
      } catch (error) {
        this.logger.warn({ service: id, err: error }, 'could not deregister from Consul: the agent drops it once its check has been critical for 1m');
      }
    }
  }

  private async registerAll(retryMs: number): Promise<void> {
    try {
      for (const service of this.services) {
        if (this.stopped) return;
        if (this.registered.has(service.id)) continue;
        await this.consul.agent.service.register(service);
        this.registered.add(service.id);
        this.logger.info({ service: service.id, port: service.port }, 'registered with Consul');
      }
    } catch (error) {
      if (this.stopped) return;
      this.logger.warn({ err: error, retryInMs: retryMs }, 'cannot register with the Consul agent; weftd serves on and tries again');
      this.timer = setTimeout(() => (this.attempt = this.registerAll(Math.min(retryMs * 2, LAST_RETRY_MS))), retryMs);
      this.timer.unref();
    }
  }
}
