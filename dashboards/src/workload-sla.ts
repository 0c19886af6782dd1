// Workload SLA: what each class promises, and each volume and each workload against its class's
// objectives: p99 latency as a share of the objective, availability and the error budget left.
import { Dashboard, DashboardBuilder, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import { graph, query, tableOf, thresholds, weftDashboard } from './panels';
import { BY_ALLOCATION, BY_VOLUME, BY_WORKLOAD, CLASS, errorBudgetLeft, errorRatio, Grouping, latencyQuantile, perObjective, strictestObjective } from './promql';
import { classVariable, datasourceVariable, jobVariable, namespaceVariable, nodeVariable, workloadVariable } from './variables';

const READ_P99 = 'weft_sla_objective_read_latency_p99_seconds';
const WRITE_P99 = 'weft_sla_objective_write_latency_p99_seconds';
const AVAILABILITY = 'weft_sla_objective_availability_ratio';

/** p99 of an operation divided by its class's objective: above 1 the promise is broken. */
const p99ShareOf = (grouping: Grouping, operation: 'read' | 'write') =>
  perObjective(latencyQuantile(0.99, grouping, operation), operation === 'read' ? READ_P99 : WRITE_P99);

/** The rows of one grouping (per volume, per workload): a table at the range's end and graphs. */
function slaPanels(builder: DashboardBuilder, who: string, grouping: Grouping, legend: string): DashboardBuilder {
  const budgetTable = tableOf(`${who} against objectives`,
    `Per ${who.toLowerCase()}: read and write p99 as a share of the class's objective (above 100 %: broken), the share of operations that succeeded over the range, and the error budget left (what the availability objective allows minus what failed; below 0: broken). Empty cells: the class promises nothing there.`,
    [
      ['Read p99 / objective', p99ShareOf(grouping, 'read')],
      ['Write p99 / objective', p99ShareOf(grouping, 'write')],
      ['Availability', `1 - (${errorRatio(grouping)})`],
      ['Error budget left', errorBudgetLeft(grouping)],
    ]).unit('percentunit').span(24);
  const share = (operation: 'read' | 'write') =>
    graph(`${who}: ${operation} p99 / objective`,
      `${operation === 'read' ? 'Read' : 'Write'} p99 latency as a share of the class's objective. Above 100 % for long: the pool is too slow for the class; look at its disks, the node's event-loop delay, or move the volume to a faster class.`,
      'percentunit', query(p99ShareOf(grouping, operation), legend)).thresholds(thresholds([1, 'red']));
  return builder
    .withPanel(budgetTable)
    .withPanel(share('read'))
    .withPanel(share('write'))
    .withPanel(graph(`${who}: error budget left`,
      'Error budget left over the range, as time goes on. Falling fast: find the failing operations on the volume detail dashboard (errors by kind).',
      'percentunit', query(errorBudgetLeft(grouping), legend)).thresholds(thresholds([0, 'red'])));
}

export function workloadSla(): Dashboard {
  const objectives = (family: string) => strictestObjective(family, CLASS);
  const builder = weftDashboard('Workload SLA',
    'Each volume, and each workload, against the objectives of its class. The per-workload rows count the attachment of each workload (weft_workload_*: the I/O of a pod or allocation on its node), joined on weft_volume_info{volume, class, orchestrator, namespace, pod, nomad_job, alloc, ...}, which weftd exports for the volumes the CSI driver attached for a pod or a Nomad allocation; the per-volume row covers every volume.',
    { from: 'now-24h', refresh: '1m' }, [datasourceVariable(), nodeVariable(), classVariable(), namespaceVariable(), workloadVariable(), jobVariable()])

    .withRow(new RowBuilder('Objectives'))
    .withPanel(tableOf('Class objectives', 'What each class promises (weftd\'s config, classes.*.objectives). Where the nodes\' configs disagree, the strictest (the lowest latency, the highest availability), as the alerts take it. A class missing here promises nothing: nothing below is measured against it.', [
      ['Read p99', objectives(READ_P99)],
      ['Write p99', objectives(WRITE_P99)],
      ['Availability', objectives(AVAILABILITY)],
    ]).span(24).overrideByName('Read p99', [{ id: 'unit', value: 's' }]).overrideByName('Write p99', [{ id: 'unit', value: 's' }]).overrideByName('Availability', [{ id: 'unit', value: 'percentunit' }]))
    .withRow(new RowBuilder('Per volume'));
  slaPanels(builder, 'Volumes', BY_VOLUME, '{{volume}} ({{class}})');
  builder.withRow(new RowBuilder('Per workload (pods)'));
  slaPanels(builder, 'Workloads', BY_WORKLOAD, '{{namespace}}/{{pod}} ({{class}})');
  builder.withRow(new RowBuilder('Per workload (Nomad allocations)'));
  return slaPanels(builder, 'Allocations', BY_ALLOCATION, '{{nomad_job}}/{{alloc}} ({{class}})').build();
}
