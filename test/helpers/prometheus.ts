// A real Prometheus (Debian's `prometheus`) for tests: scrapes the given targets every second from a
// temp dir and a free port, answers instant queries; stopped by cleanupAll() like every process.

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

export interface PrometheusHandle {
  url: string;
  /** The instant vector an expression gives now; throws with Prometheus' error if it does not parse. */
  query(expr: string): Promise<PromSeries[]>;
}

/** Starts Prometheus scraping `targets` (host:port of /metrics) under job `job`; resolves once it is ready. */
export async function startPrometheus(targets: string[], job = 'weft'): Promise<PrometheusHandle> {
  const dir = makeTempDir('weft-prometheus-');
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, `global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: ${job}\n    static_configs: [{targets: ${JSON.stringify(targets)}}]\n`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  track(spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' }));
  await waitFor(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true, 30_000, 200);
  return {
    url,
    async query(expr: string) {
      const answer = (await (await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: PromSeries[] };
      };
      if (answer.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${answer.error}`);
      return answer.data!.result;
    },
  };
}
