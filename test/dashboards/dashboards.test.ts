// The committed dashboards/*.json are what `npm run dashboards` writes now, and each is sound: titled
// panels reading from the datasource variable, PromQL naming only the metrics weftd serves.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DASHBOARDS_DIR, renderDashboards } from '../../dashboards/src/generate';
import { metricNames, problems } from './lint';

const rendered = renderDashboards();

describe('dashboards as code', () => {
  test('the generator makes the three dashboards', () => {
    expect([...rendered.keys()].sort()).toEqual(['cluster-overview.json', 'volume-detail.json', 'workload-sla.json']);
  });

  test.each([...rendered.keys()])('committed %s is the generator\'s output (run npm run dashboards)', (file) => {
    expect(fs.readFileSync(path.join(DASHBOARDS_DIR, file), 'utf8')).toBe(rendered.get(file));
  });

  test.each([...rendered.keys()])('%s: titled panels on ${datasource}, known metrics only', (file) => {
    const dashboard = JSON.parse(rendered.get(file)!);
    expect(dashboard.panels.filter((panel: { type: string }) => panel.type !== 'row').length).toBeGreaterThan(5);
    expect(problems(dashboard)).toEqual([]);
  });

  test('every dashboard offers the datasource, node and class variables; the SLA one namespace, workload and Nomad job too', () => {
    const variables = (file: string) => JSON.parse(rendered.get(file)!).templating.list.map((v: { name: string }) => v.name);
    for (const file of rendered.keys()) expect(variables(file)).toEqual(expect.arrayContaining(['datasource', 'node', 'class']));
    expect(variables('workload-sla.json')).toEqual(expect.arrayContaining(['namespace', 'workload', 'job']));
    expect(variables('volume-detail.json')).toContain('volume');
  });
});

describe('the dashboard lint catches', () => {
  const good = () => JSON.parse(rendered.get('volume-detail.json')!);

  test('metric names, not functions, keywords, labels or strings', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, operation) (rate(weft_volume_operation_seconds_bucket{volume="a b"}[5m])))'))
      .toEqual(['weft_volume_operation_seconds_bucket']);
    expect(metricNames('count(up{instance=~"$node"} == 0) or vector(0)')).toEqual(['up']);
    expect(metricNames('max(weft_sla_objective_read_latency_p99_seconds and on (class) weft_volume_capacity_bytes)'))
      .toEqual(['weft_sla_objective_read_latency_p99_seconds', 'weft_volume_capacity_bytes']);
    expect(metricNames('1 - weft_volume_reads_total / 2e3')).toEqual(['weft_volume_reads_total']);
  });

  test('a misspelled metric in a panel or a variable', () => {
    const dashboard = good();
    dashboard.panels[1].targets[0].expr = 'rate(weft_volume_operation_total{volume="$volume"}[5m])';
    dashboard.templating.list[1].query = 'label_values(weft_nbd_connection, instance)';
    expect(problems(dashboard)).toEqual([
      `panel "${dashboard.panels[1].title}": unknown metric weft_volume_operation_total`,
      'variable node: unknown metric weft_nbd_connection',
    ]);
  });

  test('a panel without a title, or reading from a fixed datasource', () => {
    const dashboard = good();
    dashboard.panels[1].title = '';
    dashboard.panels[2].datasource = { type: 'prometheus', uid: 'prod-prometheus' };
    dashboard.panels[2].targets[0].datasource = { type: 'prometheus', uid: 'prod-prometheus' };
    expect(problems(dashboard)).toEqual([
      'panel "": no title',
      `panel "${dashboard.panels[2].title}": datasource is not \${datasource}`,
      `panel "${dashboard.panels[2].title}": a query's datasource is not \${datasource}`,
    ]);
  });
});
