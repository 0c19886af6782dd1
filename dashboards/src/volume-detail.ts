// Volume detail: one volume's I/O (IOPS, throughput, latency heatmap and percentiles against its
// class's objectives), its replicas, its errors and its space.
import { Dashboard, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import * as heatmap from '@grafana/grafana-foundation-sdk/heatmap';
import { PromQueryFormat } from '@grafana/grafana-foundation-sdk/prometheus';
import { DATASOURCE, graph, query, tableOf, weftDashboard } from './panels';
import { NODE, rate } from './promql';
import { classVariable, datasourceVariable, nodeVariable, volumeVariable } from './variables';

const VOLUME = `${NODE}, volume="$volume"`;
/** The objective of the volume's class (any node holding the volume knows its class): the strictest where nodes' configs disagree, as the rules take it. */
const objective = (family: string) => `min(${family} and on (class) weft_volume_capacity_bytes{volume="$volume"})`;

function percentiles(operation: 'read' | 'write') {
  const buckets = rate(`weft_volume_operation_seconds_bucket{${VOLUME}, operation="${operation}"}`);
  const quantile = (q: number) => query(`histogram_quantile(${q}, sum by (le) (${buckets}))`, `p${q * 100}`);
  return graph(`${operation === 'read' ? 'Read' : 'Write'} latency percentiles`,
    `p50, p90 and p99 of ${operation}s, estimated from the histogram's buckets, and the p99 the volume's class promises (no line: it promises none). A p99 above the objective for long burns the SLA: look at the pool's disks and the node's event-loop delay.`,
    's', quantile(0.5), quantile(0.9), quantile(0.99),
    query(objective(`weft_sla_objective_${operation}_latency_p99_seconds`), 'objective p99'));
}

export function volumeDetail(): Dashboard {
  return weftDashboard('Volume detail',
    'One volume: I/O as counted on the node its client is attached to, latency against its class\'s objectives, replicas (from its primary), errors and space.',
    { from: 'now-1h', refresh: '30s' }, [datasourceVariable(), nodeVariable(), classVariable(), volumeVariable()])

    .withRow(new RowBuilder('I/O'))
    .withPanel(graph('IOPS', 'Block operations per second by operation (read, write, flush, trim, write_zeroes, block_status).', 'iops',
      query(`sum by (operation) (${rate(`weft_volume_operations_total{${VOLUME}}`)})`, '{{operation}}')))
    .withPanel(graph('Throughput', 'Bytes per second read and written.', 'Bps',
      query(`sum by (direction) (${rate(`weft_volume_bytes_total{${VOLUME}}`)})`, '{{direction}}')))
    .withPanel(graph('In flight', 'Operations begun and not yet completed. Growing while IOPS stays flat means the layers below answer slowly.', 'none',
      query(`sum(weft_volume_in_flight_requests{${VOLUME}})`, 'in flight')))

    .withRow(new RowBuilder('Latency'))
    .withPanel(
      new heatmap.PanelBuilder()
        .title('Latency heatmap')
        .description('Reads and writes completed per latency bucket (50 µs to 10 s) over time. A second band higher up is a slow path: a remote copy, a saturated disk.')
        .datasource(DATASOURCE)
        .unit('s')
        .calculate(false)
        .height(8)
        .span(12)
        .withTarget(
          query(`sum by (le) (increase(weft_volume_operation_seconds_bucket{${VOLUME}, operation=~"read|write"}[$__rate_interval]))`, '{{le}}')
            .format(PromQueryFormat.Heatmap)
            .refId('A'),
        ),
    )
    .withPanel(percentiles('read'))
    .withPanel(percentiles('write'))

    .withRow(new RowBuilder('Replicas'))
    .withPanel(tableOf('Replica states', 'Each copy and its state, from the node serving the volume as primary. Anything but in-sync for long: look at the replica\'s node (up? its pool full?).', [
      ['State', `weft_replica_state{volume="$volume"} == 1`],
    ]))
    .withPanel(graph('Replica bytes behind', 'What each remote copy lacks, and the size of the resync under way.', 'bytes',
      query(`weft_replica_behind_bytes{volume="$volume"}`, '{{replica}} behind'),
      query(`weft_replica_resync_size_bytes{volume="$volume"}`, '{{replica}} resync size')))
    .withPanel(graph('Resync', 'Done share of each resync, and bytes copied per second.', 'percentunit',
      query(`weft_replica_resync_progress_ratio{volume="$volume"}`, '{{replica}} progress'),
      query(rate(`weft_replica_resync_copied_bytes_total{volume="$volume"}`), '{{replica}} copied B/s')).overrideByRegexp('copied', [{ id: 'unit', value: 'Bps' }]))
    .withPanel(graph('Epoch', 'The volume\'s epoch: it goes up at each change of primary. Steps close together mean the primary keeps failing over.', 'none',
      query(`max(weft_volume_epoch{volume="$volume"})`, 'epoch')))

    .withRow(new RowBuilder('Errors and space'))
    .withPanel(graph('Errors', 'Failed operations per second by operation and kind (the errno the client saw, or checksum). eio/checksum: the disk; enospc: the pool is full; eshutdown: weftd was stopping.', 'reqps',
      query(`sum by (operation, kind) (${rate(`weft_volume_errors_total{${VOLUME}}`)})`, '{{operation}} {{kind}}')))
    .withPanel(graph('Space', 'The volume\'s size and the pool space its blocks hold on each node.', 'bytes',
      query(`weft_volume_capacity_bytes{${VOLUME}}`, '{{instance}} capacity'),
      query(`weft_volume_allocated_bytes{${VOLUME}}`, '{{instance}} allocated')))
    .build();
}
