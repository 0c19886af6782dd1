// Cluster overview: are the weftd nodes up, how full are the pools, is any copy behind or any block
// failing, and which volumes do the most I/O.
import { Dashboard, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import { figure, graph, query, tableOf, thresholds, weftDashboard } from './panels';
import { BY_VOLUME, CLASS, NODE, rate, sumBy } from './promql';
import { classVariable, datasourceVariable, nodeVariable } from './variables';

const topVolumes = (expr: string) => `topk(10, ${expr})`;

export function clusterOverview(): Dashboard {
  const pool = (family: string) => `sum by (class) (${family}{${NODE}, ${CLASS}})`;
  return weftDashboard('Cluster overview',
    'weftd nodes, pools per class, replica health and the busiest volumes, from the weft_ families of every weftd.',
    { from: 'now-1h', refresh: '30s' }, [datasourceVariable(), nodeVariable(), classVariable()])

    .withRow(new RowBuilder('Nodes'))
    .withPanel(figure('Nodes up', 'weftd targets Prometheus scrapes successfully.', 'none', `sum(up{${NODE}})`))
    .withPanel(
      figure('Nodes down', 'weftd targets whose last scrape failed: check the process (systemctl status weftd, its pod) and the network to it.', 'none', `count(up{${NODE}} == 0) or vector(0)`)
        .thresholds(thresholds([1, 'red'])),
    )
    .withPanel(figure('NBD connections', 'Open NBD connections (clients and replication) on the selected nodes.', 'none', `sum(weft_nbd_connections{${NODE}})`))
    .withPanel(graph('Event-loop delay p99', 'How late weftd\'s event loop runs (beyond a 10 ms probe), p99 since the previous scrape. Above a few ms every I/O waits: look for a busy CPU or a long synchronous task on that node.', 's', query(`weft_event_loop_delay_seconds{${NODE}, quantile="0.99"}`, '{{instance}}')))
    .withPanel(graph('Control API errors', 'Control API calls per second that did not end OK, by node and gRPC code.', 'reqps', query(`sum by (instance, code) (${rate(`weft_api_requests_total{${NODE}, code!="OK"}`)})`, '{{instance}} {{code}}')))

    .withRow(new RowBuilder('Pools and capacity'))
    .withPanel(
      graph('Pool use', 'Used share of each class\'s pool capacity. Above 80 % plan more disks or move volumes; a full pool refuses writes to thin volumes.', 'percentunit', query(`${pool('weft_pool_used_bytes')} / ${pool('weft_pool_capacity_bytes')}`, '{{class}}'))
        .min(0)
        .max(1)
        .thresholds(thresholds([0.8, 'orange'], [0.9, 'red'])),
    )
    .withPanel(
      figure('Pools not answering', 'Pools stalled (a disk under them has not finished a sync for over a second, or its I/O made no progress for 5 s) or lost (refusing writes until weftd restarts). Their volumes\' FLUSHes wait or fail; the node\'s other pools go on. Check that disk; weft pool list shows the state.', 'none',
        `count(weft_pool_state{${NODE}, ${CLASS}, state=~"stalled|lost"} == 1) or vector(0)`).thresholds(thresholds([1, 'red'])),
    )
    .withPanel(graph('Pool bytes', 'Capacity, used and provisioned bytes per class. Provisioned above capacity is thin overcommit: fine while used stays well below capacity.', 'bytes',
      query(pool('weft_pool_capacity_bytes'), '{{class}} capacity'),
      query(pool('weft_pool_used_bytes'), '{{class}} used'),
      query(pool('weft_pool_provisioned_bytes'), '{{class}} provisioned')))

    .withRow(new RowBuilder('Health'))
    .withPanel(
      figure('Copies not in sync', 'Replicas whose state is not in-sync (out, resyncing, failed), on the nodes serving their volume as primary. Resyncing clears itself; out or failed for long: see the volume detail dashboard and the replica\'s node.', 'none',
        `count(weft_replica_state{${NODE}, state!="in-sync"} == 1) or vector(0)`).thresholds(thresholds([1, 'orange'])),
    )
    .withPanel(
      figure('Checksum failures', 'Blocks that failed their checksum over the range: the disk under that pool returns bad data. Check its SMART status and the volume\'s replicas.', 'none',
        `sum(increase(weft_volume_checksum_errors_total{${NODE}}[$__range])) or vector(0)`).thresholds(thresholds([1, 'red'])),
    )
    .withPanel(
      figure('I/O errors', 'Block operations per second that failed, all volumes. Their kind is on the volume detail dashboard.', 'reqps',
        `sum(${rate(`weft_volume_errors_total{${NODE}}`)}) or vector(0)`).thresholds(thresholds([0.001, 'red'])),
    )
    .withPanel(graph('Replica bytes behind', 'What each remote copy lacks. It should fall back to 0 after a node comes back; growing means the copy cannot keep up or cannot be reached.', 'bytes',
      query(`sum by (volume, replica) (weft_replica_behind_bytes{${NODE}})`, '{{volume}} → {{replica}}')))
    .withPanel(graph('Resync progress', 'Done share of each resync under way (copies with nothing to copy are not shown).', 'percentunit',
      query(`weft_replica_resync_progress_ratio{${NODE}} < 1`, '{{volume}} → {{replica}}')).min(0).max(1))

    .withRow(new RowBuilder('Top volumes'))
    .withPanel(tableOf('Top volumes by IOPS', 'The 10 volumes of the selected classes with the most block operations per second, at the range\'s end.', [
      ['IOPS', topVolumes(sumBy(BY_VOLUME, rate(`weft_volume_operations_total{${NODE}}`)))],
    ]))
    .withPanel(tableOf('Top volumes by throughput', 'The 10 volumes with the most bytes read and written per second.', [
      ['Bytes/s', topVolumes(sumBy(BY_VOLUME, rate(`weft_volume_bytes_total{${NODE}}`)))],
    ]).unit('Bps'))
    .withPanel(tableOf('Top volumes by allocated bytes', 'The 10 volumes holding the most pool space (thin: what their blocks use, not their size).', [
      ['Allocated', topVolumes(`max by (volume, class) (weft_volume_allocated_bytes{${NODE}, ${CLASS}})`)],
    ]).unit('bytes'))
    .build();
}
