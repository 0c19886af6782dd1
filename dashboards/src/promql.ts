// PromQL fragments the three dashboards share: label filters bound to the template variables, and the
// joins that give an I/O series its volume's class or its workload (a pod: namespace, pod; a Nomad
// allocation: nomad_job, alloc).

/** The label matchers of each template variable, for the families that carry that label. */
export const NODE = 'instance=~"$node"';
export const CLASS = 'class=~"$class"';
export const WORKLOAD = 'orchestrator="kubernetes", namespace=~"$namespace", pod=~"$workload"';
// nomad_job: Prometheus renames a target's own `job` label exported_job (its scrape job wins).
export const ALLOCATION = 'orchestrator="nomad", nomad_job=~"$job"';

/** A counter's per-second rate over Grafana's rate interval. */
export function rate(selector: string): string {
  return `rate(${selector}[$__rate_interval])`;
}

/**
 * 1 per volume of the selected classes, with its class. Multiplying an I/O series by it
 * (`on(volume) group_left(class)`) keeps only those volumes and adds their class: the I/O families
 * have no class label, the capacity gauge has it on every node that holds the volume, and
 * weft_volume_info on every node it is attached on (a volume whose copies' nodes cannot be scraped
 * stays, with its I/O on the node it is attached on). One class per
 * name: volumes of one node alone are named per node, and two of other classes under one name made
 * the join fail (many-to-many) for every volume; one is kept, as the recording rules do.
 */
export const VOLUME_CLASS = `topk by (volume) (1, group by (volume, class) (weft_volume_capacity_bytes{${CLASS}} or weft_volume_info{${CLASS}}))`;

/** Error kinds a client causes (a write to a snapshot, a read past the end): not the volume's failure, as in the recording rules. */
export const SERVED_ERRORS = 'kind!~"einval|eperm|eoverflow|enotsup"';

/**
 * 1 per (volume, class, namespace, pod) for the volumes the selected pods use, from the info metric
 * weft_volume_info (one series per workload of each attachment, on the node attached): one series
 * per (volume, namespace, pod) however many pods share the volume, to join a weft_workload_ series on.
 */
export const VOLUME_WORKLOAD =
  `clamp(max by (volume, class, namespace, pod) (weft_volume_info{${CLASS}, ${WORKLOAD}}), 1, 1)`;

/** The same for the volumes of the selected Nomad jobs' allocations: one per (volume, alloc), with its job. */
export const VOLUME_ALLOCATION =
  `clamp(max by (volume, class, nomad_job, alloc) (weft_volume_info{${CLASS}, ${ALLOCATION}}), 1, 1)`;

/**
 * A way to group I/O series: by volume (with its class), or by workload (with the class): pod or
 * Nomad allocation. A workload's I/O is its attachment's on its node (weft_workload_*), not the whole
 * volume's: two pods that share a volume on different nodes each get their own.
 */
export interface Grouping {
  /** the I/O families read: weft_volume (per volume, every node) or weft_workload (per attachment's workload) */
  family: 'weft_volume' | 'weft_workload';
  /** labels the results carry, `class` among them */
  labels: string;
  /** the labels the join matches on: one series of `join` per value of them */
  on: string;
  /** the 1-valued series that brings the labels `on` does not match */
  join: string;
}
export const BY_VOLUME: Grouping = { family: 'weft_volume', labels: 'volume, class', on: 'volume', join: VOLUME_CLASS };
export const BY_WORKLOAD: Grouping = { family: 'weft_workload', labels: 'namespace, pod, class', on: 'volume, namespace, pod', join: VOLUME_WORKLOAD };
export const BY_ALLOCATION: Grouping = { family: 'weft_workload', labels: 'nomad_job, alloc, class', on: 'volume, alloc', join: VOLUME_ALLOCATION };

/** `sum by (labels)` of an I/O expression (over the grouping's family) joined to the grouping's labels. */
export function sumBy(grouping: Grouping, expr: string, extraLabels = ''): string {
  const labels = extraLabels ? `${extraLabels}, ${grouping.labels}` : grouping.labels;
  const brought = grouping.labels.split(', ').filter((label) => !grouping.on.split(', ').includes(label)).join(', ');
  return `sum by (${labels}) (${expr} * on (${grouping.on}) group_left (${brought}) ${grouping.join})`;
}

/** The q-quantile of an operation's latency per group, from the histogram's buckets. */
export function latencyQuantile(q: number, grouping: Grouping, operation: string): string {
  const buckets = rate(`${grouping.family}_operation_seconds_bucket{${NODE}, operation="${operation}"}`);
  return `histogram_quantile(${q}, ${sumBy(grouping, buckets, 'le')})`;
}

/**
 * A class's objective from an objective gauge: the strictest where nodes' configs disagree (the lowest
 * latency, the highest availability), as the recording rules take it.
 */
export function strictestObjective(family: string, filter = ''): string {
  return `${/availability/.test(family) ? 'max' : 'min'} by (class) (${family}${filter ? `{${filter}}` : ''})`;
}

/** A latency objective gauge (per class) matched to each group of `expr`, which carries `class`. */
export function perObjective(expr: string, objective: string): string {
  return `${expr} / on (class) group_left () ${strictestObjective(objective)}`;
}

/**
 * The share of operations that failed over the dashboard's range, per group, by the volume's fault
 * (SERVED_ERRORS). A group without a single error has no errors series: it counts 0, not nothing.
 */
export function errorRatio(grouping: Grouping): string {
  const over = (family: string) => sumBy(grouping, `increase(${family}[$__range])`);
  const operations = over(`${grouping.family}_operations_total{${NODE}}`);
  return `(${over(`${grouping.family}_errors_total{${NODE}, ${SERVED_ERRORS}}`)} or 0 * ${operations}) / ${operations}`;
}

/**
 * The error budget left over the range: 1 with no failure, 0 when failures used all that the class's
 * availability objective allows, below 0 when the objective is broken.
 */
export function errorBudgetLeft(grouping: Grouping): string {
  const allowed = `(1 - ${strictestObjective('weft_sla_objective_availability_ratio')})`;
  return `1 - (${errorRatio(grouping)}) / on (class) group_left () ${allowed}`;
}
