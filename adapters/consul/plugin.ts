// Consul service registration as a weftd plugin, loaded with --consul-addr: registers the node's
// services (services.ts) with the Consul agent, and deregisters them when weftd stops cleanly. An agent
// that cannot be reached, or refuses (an ACL token without service:write), does not stop weftd: it
// logs a warning and tries again in the background. The ACL token comes from Consul's own variables,
// CONSUL_HTTP_TOKEN_FILE (read at start) or CONSUL_HTTP_TOKEN, the file first as in Consul's CLI.

import fs from 'node:fs';
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
/**
 * How often, once every service is registered, it checks that the agent still has them: an agent
 * restarted without its data (a -dev agent, a container on ephemeral storage), or an operator's
 * deregister, drops them, and Prometheus' Consul discovery with them, with no alert.
 */
const RECHECK_MS = 10_000;

export function consulPlugin(agent: HostPort): DaemonPlugin {
  return { name: 'consul', start: async (context) => startRegistration(agent, context) };
}

function startRegistration(agent: HostPort, { config, logger, ports, version }: PluginContext): StartedPlugin {
  const token = aclToken(process.env);
  const options = {
    host: agent.host.includes(':') ? `[${agent.host}]` : agent.host,
    port: agent.port,
    timeout: REQUEST_TIMEOUT_MS,
    ...(token === undefined ? {} : { defaults: { token } }),
  };
  const services = weftServices({ nodeId: config.nodeId, version, zone: config.zone, address: config.advertise, ports });
  const registration = new Registration(new Consul(options), services, logger.child({ agent: `${agent.host}:${agent.port}` }), token !== undefined);
  registration.start();
  return { stop: () => registration.stop() };
}

/**
 * The ACL token from CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN; none when neither is set. A token
 * file that cannot be read, or holds nothing, stops the start: the registrations would be refused.
 */
export function aclToken(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.CONSUL_HTTP_TOKEN_FILE;
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read the Consul token file CONSUL_HTTP_TOKEN_FILE=${file}: ${(error as Error).message}`);
    }
    const token = text.trim();
    if (token === '') throw new Error(`the Consul token file CONSUL_HTTP_TOKEN_FILE=${file} is empty`);
    return token;
  }
  return env.CONSUL_HTTP_TOKEN || undefined;
}

/** Registers every service, retrying until all are, and again any the agent loses; on stop, deregisters them. */
class Registration {
  private readonly registered = new Set<string>();
  /** Every service it asked the agent to register: one whose answer timed out may be registered all the same. */
  private readonly asked = new Set<string>();
  private attempt: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly consul: Consul,
    private readonly services: ServiceRegistration[],
    private readonly logger: Logger,
    private readonly hasToken: boolean,
  ) {}

  start(): void {
    this.attempt = this.registerAll(FIRST_RETRY_MS);
  }

  /** At most two agent calls' time (REQUEST_TIMEOUT_MS each): the registration under way, then every deregistration at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.attempt; // a registration under way ends before its service is deregistered
    await Promise.all([...this.asked].map(async (id) => {
      try {
        await this.consul.agent.service.deregister(id);
        this.logger.info({ service: id }, 'deregistered from Consul');
      } catch (error) {
        if (!this.registered.has(id) && (error as { statusCode?: unknown }).statusCode === 404) return; // it never got there
        this.logger.warn({ service: id, err: error }, 'could not deregister from Consul: the agent drops it once its check has been critical for 30m');
      }
    }));
  }

  /** What an operator should do about a refusal for lack of permission (403, Consul's ACLs). */
  private refusalHint(error: unknown): string {
    if ((error as { statusCode?: unknown }).statusCode !== 403) return '';
    return this.hasToken
      ? ' (403: the ACL token of CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE lacks service:write on the weft-* services, or is unknown to Consul)'
      : ' (403: the agent enforces ACLs; set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE to a token with service:write on the weft-* services)';
  }

  private async registerAll(retryMs: number): Promise<void> {
    try {
      for (const service of this.services) {
        if (this.stopped) return;
        if (this.registered.has(service.id)) continue;
        this.asked.add(service.id);
        await this.consul.agent.service.register(service);
        this.registered.add(service.id);
        this.logger.info({ service: service.id, port: service.port }, 'registered with Consul');
      }
    } catch (error) {
      if (this.stopped) return;
      this.logger.warn({ err: error, retryInMs: retryMs }, `cannot register with the Consul agent${this.refusalHint(error)}; weftd serves on and tries again`);
      this.later(() => this.registerAll(Math.min(retryMs * 2, LAST_RETRY_MS)), retryMs);
      return;
    }
    if (!this.stopped) this.later(() => this.recheck(), RECHECK_MS);
  }

  /** Registers again the services the agent no longer lists; an agent out of reach is asked again later. */
  private async recheck(): Promise<void> {
    try {
      const listed = (await this.consul.agent.service.list()) as Record<string, unknown>;
      const lost = [...this.registered].filter((id) => !(id in listed));
      if (lost.length > 0) this.logger.warn({ services: lost }, 'the Consul agent no longer lists these services (restarted without its data, or deregistered by hand): registering them again');
      for (const id of lost) this.registered.delete(id);
    } catch (error) {
      this.logger.debug({ err: error }, 'could not list the services of the Consul agent; asked again later');
    }
    await this.registerAll(FIRST_RETRY_MS);
  }

  private later(attempt: () => Promise<void>, ms: number): void {
    this.timer = setTimeout(() => (this.attempt = attempt()), ms);
    this.timer.unref();
  }
}
