// Panel and query builders every Weft dashboard uses: each panel and each query reads from the
// dashboard's `datasource` variable, so one import serves any Prometheus that scrapes weftd.
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as cog from '@grafana/grafana-foundation-sdk/cog';
import { DashboardBuilder, ThresholdsConfigBuilder, ThresholdsMode, VariableModel } from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder, PromQueryFormat } from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';

export const DATASOURCE: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

/** A Weft dashboard: fixed uid (importing again replaces it), tags, its range and its variables. */
export function weftDashboard(
  name: string,
  description: string,
  range: { from: string; refresh: string },
  variables: cog.Builder<VariableModel>[],
): DashboardBuilder {
  const builder = new DashboardBuilder(`Weft / ${name}`)
    .uid(`weft-${name.toLowerCase().replace(/ /g, '-')}`)
    .description(description)
    .tags(['weft', 'storage'])
    .time({ from: range.from, to: 'now' })
    .refresh(range.refresh);
  variables.forEach((variable) => builder.withVariable(variable));
  return builder;
}

/** A Prometheus query over a range, one series per `legend`. */
export function query(expr: string, legend: string): DataqueryBuilder {
  return new DataqueryBuilder().datasource(DATASOURCE).expr(expr).legendFormat(legend).range();
}

/** A Prometheus query at the range's end, one table row per series. */
export function instantQuery(expr: string): DataqueryBuilder {
  return new DataqueryBuilder().datasource(DATASOURCE).expr(expr).instant().format(PromQueryFormat.Table);
}

/** Threshold steps from green: each [value, color] starts a band. */
export function thresholds(...steps: [number, string][]): ThresholdsConfigBuilder {
  return new ThresholdsConfigBuilder()
    .mode(ThresholdsMode.Absolute)
    .steps([{ value: null, color: 'green' }, ...steps.map(([value, color]) => ({ value, color }))]);
}

/** A graph over time of one or more queries. */
export function graph(title: string, description: string, unit: string, ...targets: DataqueryBuilder[]): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder().title(title).description(description).datasource(DATASOURCE).unit(unit).height(8).span(12);
  targets.forEach((target, index) => panel.withTarget(target.refId(refId(index))));
  return panel;
}

/** One figure: the last value of one query. */
export function figure(title: string, description: string, unit: string, expr: string): stat.PanelBuilder {
  return new stat.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .height(4)
    .span(4)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']))
    .withTarget(query(expr, title).refId('A'));
}

/**
 * A table of instant queries merged on their shared labels, one column per query named by `columns`
 * (the query's refId is `Value #<refId>` in Grafana's merged frame).
 */
export function tableOf(title: string, description: string, columns: [string, string][]): table.PanelBuilder {
  const panel = new table.PanelBuilder().title(title).description(description).datasource(DATASOURCE).height(8).span(12);
  const renameByName: Record<string, string> = {};
  columns.forEach(([column, expr], index) => {
    panel.withTarget(instantQuery(expr).refId(refId(index)));
    renameByName[columns.length === 1 ? 'Value' : `Value #${refId(index)}`] = column;
  });
  if (columns.length > 1) panel.withTransformation({ id: 'merge', options: {} });
  return panel.withTransformation({ id: 'organize', options: { excludeByName: { Time: true }, renameByName } });
}

function refId(index: number): string {
  return String.fromCharCode('A'.charCodeAt(0) + index);
}
