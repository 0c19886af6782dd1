// Every dashboard query through a real Prometheus scraping two real weftd nodes (etcd, a replicated
// volume under I/O through NBD, attached for a pod, a local volume attached for a Nomad allocation, a
// local volume with a block that fails its checksum): each parses, returns series, and the series
// carry the labels its legend names. Only a panel about what is not happening (a resync) may stay empty.

import fs from 'node:fs';
import path from 'node:path';
import { renderDashboards } from '../../dashboards/src/generate';
import { WeftClient } from '../../fabric/api/client';
import { startEtcd } from '../helpers/etcd';
import { freePort } from '../helpers/free-port';
import { startPrometheus, type PrometheusHandle, type PromSeries } from '../helpers/prometheus';
import { damageBlock, qemuIo, settled, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

const MiB = 1024 * 1024;

afterAll(cleanupAll);

interface Target { expr: string; legendFormat?: string }
interface Panel { type: string; title: string; targets?: Target[] }

/** Panels that have nothing to show on this cluster, and why. */
const EMPTY_HERE: Record<string, string> = {
  'Resync progress': 'no resync under way (the panel hides finished ones)',
};

describe('dashboard queries on a real Prometheus', () => {
  let prometheus: PrometheusHandle;
  let variables: Record<string, string>;
  let down: string;

  beforeAll(async () => {
    const etcd = await startEtcd(1);
    const config = path.join(makeTempDir('weft-classes-'), 'weftd.yaml');
    fs.writeFileSync(config, 'classes:\n  ssd: {objectives: {readLatencyP99: 2ms, writeLatencyP99: 5ms, availability: 99.9%}}\n');
    const nodes = await startNodes(etcd, ['n1', 'n2'], 256 * MiB, ['--config', config]);
    await weftJson(nodes[0].weftd, ['volume', 'create', 'rep', '--size', '64MiB', '--replicas', '2']);
    const primaryId = (await settled(nodes[0].weftd, 'rep')).replication!.primary;
    const primary = nodes.find((node) => node.weftd.nodeId === primaryId)!;
    // As the CSI node service records a pod's stage: the workload panels join on it.
    const api = new WeftClient(`127.0.0.1:${primary.weftd.apiPort}`);
    await api.recordAttachment({
      volume: 'rep', nodeId: primary.weftd.nodeId, devicePath: '/dev/loop-rep', method: 'nbdfuse-loop', stagingPath: '/staging/rep',
      // Two pods on the node share the volume (ReadWriteOnce allows it): neither breaks the other's rows.
      workloads: [
        { orchestrator: 'kubernetes', podName: 'web-0', podNamespace: 'shop', podUid: 'uid-web-0' },
        { orchestrator: 'kubernetes', podName: 'web-1', podNamespace: 'shop', podUid: 'uid-web-1' },
      ],
    });
    await weftJson(primary.weftd, ['volume', 'create', 'cache', '--size', '16MiB']);
    await api.recordAttachment({
      volume: 'cache', nodeId: primary.weftd.nodeId, devicePath: '/dev/loop-cache', method: 'nbdfuse-loop', stagingPath: '/staging/cache',
      workloads: [{ orchestrator: 'nomad', allocationId: '5b3f0c1e-7a2d-4c8e-9f10-2b6d4e8a1c3f', jobId: 'web', taskGroup: 'cache' }],
    }).finally(() => api.close());
    await weftJson(primary.weftd, ['volume', 'create', 'plain', '--size', '16MiB']);
    await qemuIo(primary.weftd.nbdUri('plain'), ['write -P 0x3c 0 4k', 'flush']);
    damageBlock(primary.poolDir, Buffer.alloc(4096, 0x3c));

    // And a node down since before any range (nothing listens at its address).
    down = `127.0.0.1:${await freePort()}`;
    const instances = [...nodes.map((node) => `127.0.0.1:${node.weftd.metricsPort}`), down];
    prometheus = await startPrometheus(instances);
    // I/O spread over several scrapes, so that rates and increases have two samples or more.
    for (let round = 0; round < 6; round++) {
      await qemuIo(primary.weftd.nbdUri('rep'), ['write -P 0x5a 0 1M', 'read -P 0x5a 0 1M', 'flush']);
      await qemuIo(primary.weftd.nbdUri('cache'), ['write -P 0x6b 0 256k', 'read -P 0x6b 0 256k', 'flush']);
      await expect(qemuIo(primary.weftd.nbdUri('plain'), ['read 0 4k'], true)).rejects.toThrow();
      expect((await primary.weftd.weft(['volume', 'show', 'nonexistent'])).code).toBe(1); // an API call not OK
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const scraped = async () => Number((await prometheus.query('sum(weft_volume_operations_total{volume="rep", operation="write"})'))[0]?.value[1]) >= 6;
    await waitFor(scraped, 15_000, 200);
    // What Grafana puts in place of the variables: "All" for node and class, the rep volume.
    variables = {
      // Rates over all the rounds of I/O, however long the tests before these queries took.
      __rate_interval: '1m', __range: '1m', node: `(${instances.join('|')})`, class: '(ssd)',
      volume: 'rep', namespace: '.*', workload: '.*', job: '.*',
    };
  }, 180_000);

  const interpolate = (expr: string) => expr.replace(/\$(\w+)/g, (_, name: string) => variables[name]);
  const panels = [...renderDashboards()].flatMap(([file, text]) =>
    (JSON.parse(text).panels as Panel[]).filter((panel) => panel.type !== 'row').map((panel) => [file, panel.title, panel] as const));

  test.each(panels)('%s: %s', async (_file, title, panel) => {
    for (const target of panel.targets ?? []) {
      const series = await prometheus.query(interpolate(target.expr));
      if (title in EMPTY_HERE) {
        expect(series).toEqual([]);
        continue;
      }
      expect({ expr: target.expr, empty: series.length === 0 }).toEqual({ expr: target.expr, empty: false });
      const legendLabels = [...(target.legendFormat ?? '').matchAll(/\{\{(\w+)\}\}/g)].map((match) => match[1]);
      for (const one of series) expect(Object.keys(one.metric)).toEqual(expect.arrayContaining(legendLabels));
    }
  });

  test('the SLA table: rep keeps its whole error budget, plain (a read failing each round) broke its own', async () => {
    const table = (JSON.parse(renderDashboards().get('workload-sla.json')!).panels as Panel[]).find((p) => p.title === 'Volumes against objectives')!;
    const [readP99, , availability, budget] = await Promise.all(table.targets!.map((target) => prometheus.query(interpolate(target.expr))));
    const byVolume = (series: PromSeries[]) =>
      Object.fromEntries(series.map((one) => [one.metric.volume, Number(one.value[1])]));
    expect(byVolume(budget).rep).toBe(1);
    expect(byVolume(budget).plain).toBeLessThan(0);
    expect(byVolume(availability).rep).toBe(1);
    expect(byVolume(availability).plain).toBeLessThan(0.5);
    expect(readP99.every((one) => one.metric.class === 'ssd' && Number(one.value[1]) > 0)).toBe(true);
  });

  test('the per-pod SLA table: both pods that share rep, each with its budget whole', async () => {
    const table = (JSON.parse(renderDashboards().get('workload-sla.json')!).panels as Panel[]).find((p) => p.title === 'Workloads against objectives')!;
    const budget = await prometheus.query(interpolate(table.targets![3].expr));
    const rows = budget.map((one) => [one.metric.namespace, one.metric.pod, one.metric.class, Number(one.value[1])]);
    expect(rows.sort()).toEqual([['shop', 'web-0', 'ssd', 1], ['shop', 'web-1', 'ssd', 1]]);
  });

  test('the per-allocation SLA table: the Nomad allocation of cache, by job and allocation, its budget whole', async () => {
    const table = (JSON.parse(renderDashboards().get('workload-sla.json')!).panels as Panel[]).find((p) => p.title === 'Allocations against objectives')!;
    const budget = await prometheus.query(interpolate(table.targets![3].expr));
    expect(budget.map((one) => [one.metric.nomad_job, one.metric.alloc, one.metric.class, Number(one.value[1])])).toEqual([['web', '5b3f0c1e-7a2d-4c8e-9f10-2b6d4e8a1c3f', 'ssd', 1]]);
  });

  test('"Nodes down" counts the node that has been down all along', async () => {
    const panel = (JSON.parse(renderDashboards().get('cluster-overview.json')!).panels as Panel[]).find((p) => p.title === 'Nodes down')!;
    const [count] = await prometheus.query(interpolate(panel.targets![0].expr));
    expect(Number(count.value[1])).toBe(1);
  });

  test('the variables list this cluster: every node (the one down too), class ssd, the pod\'s namespace and the pod, the Nomad job, the volumes', async () => {
    const list = JSON.parse(renderDashboards().get('workload-sla.json')!).templating.list.concat(
      JSON.parse(renderDashboards().get('volume-detail.json')!).templating.list.filter((v: { name: string }) => v.name === 'volume'));
    const values: Record<string, string[]> = {};
    for (const variable of list.filter((v: { type: string }) => v.type === 'query')) {
      const [, series, label] = /^label_values\((.+),\s*(\w+)\)$/.exec(variable.query)!;
      const found = await prometheus.query(`count by (${label}) (${interpolate(series)})`);
      values[variable.name] = found.map((one) => one.metric[label]).sort();
    }
    expect(values).toEqual({
      node: variables.node.slice(1, -1).split('|').sort(),
      class: ['ssd'],
      namespace: ['shop'],
      workload: ['web-0', 'web-1'],
      job: ['web'],
      volume: ['cache', 'plain', 'rep'],
    });
    expect(values.node).toContain(down);
  });
});
