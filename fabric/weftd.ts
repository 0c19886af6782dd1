// weftd, the node daemon and the composition root: parses its configuration, starts the node with
// the adapters asked for (the metrics exporter, the CSI driver, the zone from a Kubernetes node label, Consul), and stops it on
// SIGTERM or SIGINT (before it is ready: dies of it, saying so); SIGHUP is ignored. Exit codes: 0 stopped cleanly, 1
// failed to start or stop, 2 bad flags or config.

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { ConfigError, parseConfig, type WeftdConfig } from './config';
import type { DaemonPlugin, NodeHandle } from './daemon';
import { createLogger, type Logger } from './logger';

/** A one-line error on stderr, for people and for scripts that start weftd. */
function fail(message: string, exitCode: number): never {
  process.stderr.write(`weftd: ${message}\n`);
  process.exit(exitCode);
}

function loadConfig(): WeftdConfig {
  try {
    return parseConfig(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    if (error.exitCode === 0) process.exit(0);
    fail(`${error.message}; see weftd --help`, error.exitCode);
  }
}

/** The first signal stops the node gracefully; a second one exits at once. */
function stopOnSignals(node: NodeHandle, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without a clean stop');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'stopping');
    node.stop().then(
      () => {
        logger.info('weftd stopped');
        process.exit(0);
      },
      (error: Error) => {
        logger.error({ err: error }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * The plugins the configuration asks for (the metrics exporter unless --metrics-port off, the CSI driver, the Consul
 * registration); loaded only when asked for. Consul comes last: it registers the ports the others bound, and, stopped
 * first, deregisters them before they close.
 */
async function plugins(config: WeftdConfig): Promise<DaemonPlugin[]> {
  const list: DaemonPlugin[] = [];
  if (config.metricsPort !== 'off') {
    const { prometheusPlugin } = await import('../exporters/prometheus/plugin');
    list.push(prometheusPlugin(config.metricsPort));
  }
  if (config.csi) {
    const { csiPlugin } = await import('../adapters/csi/plugin');
    list.push(csiPlugin(config.csi));
  }
  if (config.consulAddr) {
    const { consulPlugin } = await import('../adapters/consul/plugin');
    list.push(consulPlugin(config.consulAddr));
  }
  return list;
}

/** The configuration with its zone: --zone's, or that of the Kubernetes node label --zone-from-node-label names. */
async function withZone(config: WeftdConfig, logger: Logger): Promise<WeftdConfig> {
  if (!config.zoneFromNodeLabel) return config;
  const { zoneFromNodeLabel } = await import('../adapters/kubernetes/node-zone');
  return { ...config, zone: await zoneFromNodeLabel(config.nodeId, config.zoneFromNodeLabel, logger) };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, config.nodeId);
  if (config.recover) {
    const { recoverDataDir } = await import('./recovery');
    const code = await recoverDataDir(config, config.recover.acceptLoss, logger, (line) => process.stdout.write(`${line}\n`)).catch((error: Error) =>
      fail(error.message, 1),
    );
    process.exit(code);
  }
  // A signal before the node serves ends the start where it is, as a crash would (every step of
  // a start is safe to cut short), but says so, then dies of the signal as its default handler
  // would (a service manager counts that as stopped, not failed). As PID 1 of a container's PID
  // namespace, the kernel drops a signal it sends itself without a handler: it exits 128 + signal.
  const duringStartup = (signal: NodeJS.Signals) => {
    logger.warn({ signal }, 'signal during startup: exiting before the node serves');
    process.stderr.write(`weftd: stopped by ${signal} before it was ready\n`);
    process.off(signal, duringStartup);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(128 + os.constants.signals[signal]), 0);
  };
  process.on('SIGTERM', duringStartup);
  process.on('SIGINT', duringStartup);
  // Node's default for SIGHUP (a terminal closed, logrotate's "reload") is to die at once, with no
  // clean stop, and systemd counts that death as clean (no restart): weftd reloads nothing.
  process.on('SIGHUP', () => logger.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: weftd reloads nothing (SIGTERM stops it)'));
  let node: NodeHandle;
  try {
    // Loaded only now: a bad flag is reported without loading the engine and gRPC (nor prom-client, in plugins()).
    const { startNode } = await import('./daemon');
    node = await startNode(await withZone(config, logger), logger, await plugins(config));
  } catch (error) {
    logger.fatal({ err: error }, 'startup failed');
    fail((error as Error).message, 1);
  }
  process.off('SIGTERM', duringStartup);
  process.off('SIGINT', duringStartup);
  stopOnSignals(node, logger);
  const { nbdPort, apiPort, metricsPort } = node;
  // nodeId is on every line (see logger.ts); startupMs counts from the process's start.
  logger.info({ nbdPort, apiPort, metricsPort, dataDir: config.dataDir, startupMs: Math.round(performance.now()) }, 'weftd ready');
}

void main();
