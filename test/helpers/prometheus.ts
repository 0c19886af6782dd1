// A real Prometheus (Debian's `prometheus`) for tests: scrapes the given targets every second from a
// temp dir and a free port, evaluates rule files every second and sends alerts to an Alertmanager
// when given them, answers instant queries; stopped by cleanupAll() like every process.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './free-port';
import { waitFor } from './wait-for';
import { makeTempDir, track } from './weftd';

export interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

/** An alert as Prometheus' /api/v1/alerts shows it: pending or firing. */
export interface PromAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

export interface PrometheusHandle {
  url: string;
  /** The instant vector an expression gives now; throws with Prometheus' error if it does not parse. */
  query(expr: string): Promise<PromSeries[]>;
  /** The alerts of the rule files, pending or firing now. */
  alerts(): Promise<PromAlert[]>;
}

export interface PrometheusOptions {
  /** The scrape job's name (default weft). */
  job?: string;
  /** Rule files to load (recording rules and alerts). */
  ruleFiles?: string[];
  /** An Alertmanager's host:port to send the alerts to. */
  alertmanager?: string;
}

/** Starts Prometheus scraping `targets` (host:port of /metrics); resolves once it is ready. */
export async function startPrometheus(targets: string[], options: PrometheusOptions = {}): Promise<PrometheusHandle> {
  const dir = makeTempDir('weft-prometheus-');
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global: {scrape_interval: 1s, evaluation_interval: 1s}',
    // honor_labels as the shipped configs (deploy/prometheus) have it.
    `scrape_configs: [{job_name: ${options.job ?? 'weft'}, honor_labels: true, static_configs: [{targets: ${JSON.stringify(targets)}}]}]`,
    `rule_files: ${JSON.stringify(options.ruleFiles ?? [])}`,
    ...(options.alertmanager ? [`alerting: {alertmanagers: [{static_configs: [{targets: ['${options.alertmanager}']}]}]}`] : []),
    '',
  ].join('\n'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  track(spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' }));
  await waitFor(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true, 30_000, 200);
  const get = async <T>(what: string): Promise<T> => {
    const answer = (await (await fetch(`${url}/api/v1/${what}`)).json()) as { status: string; error?: string; data?: T };
    if (answer.status !== 'success') throw new Error(`Prometheus refused ${what}: ${answer.error}`);
    return answer.data!;
  };
  return {
    url,
    query: async (expr) => (await get<{ result: PromSeries[] }>(`query?query=${encodeURIComponent(expr)}`)).result,
    alerts: async () => (await get<{ alerts: PromAlert[] }>('alerts')).alerts,
  };
}
