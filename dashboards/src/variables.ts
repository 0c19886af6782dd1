// The template variables: the Prometheus to read (datasource), then node, class, namespace, workload,
// Nomad job and volume, each listing the values its family shows over the dashboard's range.
import { DatasourceVariableBuilder, QueryVariableBuilder, VariableRefresh, VariableSort } from '@grafana/grafana-foundation-sdk/dashboard';
import { DATASOURCE } from './panels';

export function datasourceVariable(): DatasourceVariableBuilder {
  return new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus');
}

/**
 * A variable listing one label's values. Multi-valued ones offer "All", which Grafana expands to the
 * listed values (no custom all value): `up{instance=~"$node"}` then stays on weftd's targets.
 */
function labelValues(name: string, title: string, series: string, label: string, multi = true): QueryVariableBuilder {
  return new QueryVariableBuilder(name)
    .label(title)
    .datasource(DATASOURCE)
    .query(`label_values(${series}, ${label})`)
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.AlphabeticalAsc)
    .multi(multi)
    .includeAll(multi);
}

/**
 * weftd nodes: the instance label of every weft scrape target (the jobs WeftNodeDown watches), up or
 * down. From a weft_ family, a node down for longer than the range would drop out of the list, and
 * "Nodes down" would count it no more.
 */
export const nodeVariable = () => labelValues('node', 'Node', 'up{job=~"weft.*"}', 'instance');
export const classVariable = () => labelValues('class', 'Class', 'weft_pool_capacity_bytes{instance=~"$node"}', 'class');
export const namespaceVariable = () =>
  labelValues('namespace', 'Namespace', 'weft_volume_info{class=~"$class", orchestrator="kubernetes"}', 'namespace');
/** A workload is a pod (Kubernetes), from weft_volume_info. */
export const workloadVariable = () =>
  labelValues('workload', 'Workload', 'weft_volume_info{class=~"$class", orchestrator="kubernetes", namespace=~"$namespace"}', 'pod');
/**
 * The Nomad jobs whose allocations use volumes, from weft_volume_info. "All" matches any job, the
 * empty one too: an allocation's job is known only with weftd --nomad-addr.
 */
export const jobVariable = () => labelValues('job', 'Nomad job', 'weft_volume_info{class=~"$class", orchestrator="nomad"}', 'nomad_job').allValue('.*');
/** One volume: the volume detail dashboard shows a single one. */
export const volumeVariable = () =>
  labelValues('volume', 'Volume', 'weft_volume_capacity_bytes{instance=~"$node", class=~"$class"}', 'volume', false);
