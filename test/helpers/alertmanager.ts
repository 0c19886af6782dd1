// A real Alertmanager (Debian's `prometheus-alertmanager`) for tests, on a free loopback port with
// clustering off, routing every alert at once to a webhook served here, which keeps what it gets.
// The process is stopped by cleanupAll(); close() stops the webhook.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { freePort } from './free-port';
import { waitFor } from './wait-for';
import { makeTempDir, track } from './weftd';

/** One alert as Alertmanager's API v2 and its webhook notifications show it. */
export interface ReceivedAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  status: string | { state: string };
}

export interface AlertmanagerHandle {
  /** host:port, for Prometheus' alerting config. */
  address: string;
  /** The alerts Alertmanager holds now (GET /api/v2/alerts). */
  alerts(): Promise<ReceivedAlert[]>;
  /** Every alert of every webhook notification so far, in order. */
  notified: ReceivedAlert[];
  close(): Promise<void>;
}

export async function startAlertmanager(): Promise<AlertmanagerHandle> {
  const notified: ReceivedAlert[] = [];
  const webhook = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      notified.push(...(JSON.parse(body) as { alerts: ReceivedAlert[] }).alerts);
      response.end();
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  const webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/`;

  const dir = makeTempDir('weft-alertmanager-');
  const config = path.join(dir, 'alertmanager.yml');
  fs.writeFileSync(config, [
    'route: {receiver: webhook, group_by: [alertname, volume], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}',
    `receivers: [{name: webhook, webhook_configs: [{url: '${webhookUrl}', send_resolved: true}]}]`,
    '',
  ].join('\n'));
  const address = `127.0.0.1:${await freePort()}`;
  // An empty cluster address turns off the gossip listener (0.0.0.0:9094 by default).
  track(spawn('prometheus-alertmanager', [`--config.file=${config}`, `--storage.path=${path.join(dir, 'data')}`, `--web.listen-address=${address}`, '--cluster.listen-address='], { stdio: 'ignore' }));
  await waitFor(async () => (await fetch(`http://${address}/-/ready`).catch(() => undefined))?.ok === true, 30_000, 200);
  return {
    address,
    notified,
    async alerts() {
      return (await (await fetch(`http://${address}/api/v2/alerts`)).json()) as ReceivedAlert[];
    },
    close: () => new Promise<void>((resolve) => webhook.close(() => resolve())),
  };
}
