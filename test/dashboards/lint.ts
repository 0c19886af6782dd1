// Checks a generated Grafana dashboard: every panel titled and reading from the `datasource`
// variable, every PromQL expression (panels and variables) naming only metrics weftd serves.

/** The families weftd exports (README, Metrics) and `up` from the scrape. */
const FAMILIES = [
  'weft_volume_operations_total', 'weft_volume_errors_total', 'weft_volume_bytes_total', 'weft_volume_in_flight_requests',
  'weft_volume_capacity_bytes', 'weft_volume_allocated_bytes', 'weft_volume_checksum_errors_total', 'weft_volume_epoch',
  'weft_pool_capacity_bytes', 'weft_pool_used_bytes', 'weft_pool_provisioned_bytes', 'weft_pool_state',
  'weft_sla_objective_read_latency_p99_seconds', 'weft_sla_objective_write_latency_p99_seconds', 'weft_sla_objective_availability_ratio',
  'weft_nbd_connections', 'weft_api_requests_total', 'weft_journal_bytes',
  'weft_replica_state', 'weft_replica_behind_bytes', 'weft_replica_resync_size_bytes', 'weft_replica_resync_copied_bytes_total',
  'weft_replica_resync_progress_ratio', 'up', 'weft_volume_info',
  'weft_workload_operations_total', 'weft_workload_errors_total', 'weft_workload_bytes_total', 'weft_workload_in_flight_requests',
];
const HISTOGRAMS = ['weft_volume_operation_seconds', 'weft_workload_operation_seconds', 'weft_api_request_seconds', 'weft_journal_checkpoint_seconds'];
const SUMMARIES = ['weft_event_loop_delay_seconds'];
export const KNOWN_METRICS = new Set([
  ...FAMILIES,
  ...HISTOGRAMS.flatMap((name) => [`${name}_bucket`, `${name}_sum`, `${name}_count`]),
  ...SUMMARIES.flatMap((name) => [name, `${name}_sum`, `${name}_count`]),
]);

// Aggregations come before `by (...)`, not right before their `(`; the rest are operators.
const KEYWORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'group', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'limitk',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan',
]);

/**
 * The metric names a PromQL expression selects: identifiers followed by `{`, `[`, a space, a comma,
 * `)` or the end, once strings, label matchers, durations and `by (...)`-style label lists are gone.
 * Function names (followed by `(`) and keywords are not metrics.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1 ')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]');
  const names = [...bare.matchAll(/(?<![\w.$])([a-zA-Z_:][\w:]*)(?=\s*(?:[{[\s,)]|$))/g)].map((match) => match[1]);
  return names.filter((name) => !KEYWORDS.has(name.toLowerCase()));
}

interface Panel {
  type?: string;
  title?: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
}
interface Dashboard {
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; query?: unknown; datasource?: { uid?: string } }[] };
}

const FROM_VARIABLE = '${datasource}';

/** Every problem found in a dashboard, as lines a person can act on; none: it is good. */
export function problems(dashboard: Dashboard): string[] {
  const found: string[] = [];
  const checkExpr = (where: string, expr: string) => {
    const names = metricNames(expr);
    if (names.length === 0) found.push(`${where}: selects no metric: ${expr}`);
    for (const name of names) if (!KNOWN_METRICS.has(name)) found.push(`${where}: unknown metric ${name}`);
  };
  for (const panel of dashboard.panels ?? []) {
    if (panel.type === 'row') continue;
    const where = `panel "${panel.title ?? ''}"`;
    if (!panel.title) found.push(`${where}: no title`);
    if (panel.datasource?.uid !== FROM_VARIABLE) found.push(`${where}: datasource is not ${FROM_VARIABLE}`);
    if (!panel.targets?.length) found.push(`${where}: no query`);
    for (const target of panel.targets ?? []) {
      if (target.datasource?.uid !== FROM_VARIABLE) found.push(`${where}: a query's datasource is not ${FROM_VARIABLE}`);
      checkExpr(where, target.expr ?? '');
    }
  }
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue;
    const where = `variable ${variable.name}`;
    if (variable.datasource?.uid !== FROM_VARIABLE) found.push(`${where}: datasource is not ${FROM_VARIABLE}`);
    const labelValues = /^label_values\((.+),\s*\w+\)$/.exec(String(variable.query));
    if (labelValues) checkExpr(where, labelValues[1]);
    else found.push(`${where}: not a label_values(series, label) query: ${String(variable.query)}`);
  }
  return found;
}
