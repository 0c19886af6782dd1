// promtool check config on a Prometheus configuration. Debian's promtool is built without Consul
// SD ("Disable Consul SD until its Debian package is back in shape"), so each consul_sd_configs is
// checked as a static target instead; its own shape is for the caller to assert.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { makeTempDir } from './weftd';

export interface PrometheusConfig {
  scrape_configs: Record<string, unknown>[];
  [key: string]: unknown;
}

/** promtool's exit code (0 or 1) and output for config, rule files left out. */
export async function promtoolCheckConfig(config: PrometheusConfig): Promise<{ code: number; out: string }> {
  const dir = makeTempDir('weft-promtool-');
  const scrapeConfigs = config.scrape_configs.map((job) =>
    job.consul_sd_configs ? { ...job, consul_sd_configs: undefined, static_configs: [{ targets: ['127.0.0.1:10811'] }] } : job,
  );
  const alerting = config.alerting as { alertmanagers: Record<string, unknown>[] } | undefined;
  const alertmanagers = alerting?.alertmanagers.map((am) =>
    am.consul_sd_configs ? { ...am, consul_sd_configs: undefined, static_configs: [{ targets: ['127.0.0.1:9093'] }] } : am,
  );
  const checked = { ...config, rule_files: [], scrape_configs: scrapeConfigs, ...(alerting ? { alerting: { ...alerting, alertmanagers } } : {}) };
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify(checked));
  return new Promise((resolve) =>
    execFile('promtool', ['check', 'config', 'prometheus.yml'], { cwd: dir }, (error, stdout, stderr) => resolve({ code: error ? 1 : 0, out: stdout + stderr })),
  );
}
