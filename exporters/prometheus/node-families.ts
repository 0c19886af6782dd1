// Per-node families: pools and classes (with their objectives), NBD connections, control API calls,
// the metadata journal and the event loop.

import type { NodeTelemetry, PoolReport, ServiceClass } from '../../fabric/telemetry';
import { POOL_STATES } from '../../fabric/volume/types';
import { latencyHistogram, ScrapedFamily, simple, type Sample } from './family';

export function nodeFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  return [...poolFamilies(telemetry), ...objectiveFamilies(telemetry), ...serviceFamilies(telemetry), eventLoopFamily(telemetry)];
}

function poolFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  const perClass = (name: string, help: string, value: (pool: PoolReport) => number) =>
    simple(name, help, 'gauge', () => telemetry.pools().map((pool) => ({ labels: { class: pool.class }, value: value(pool) })));
  return [
    perClass('weft_pool_capacity_bytes', 'Bytes of storage in the pools of each service class.', (pool) => pool.capacityBytes),
    perClass('weft_pool_used_bytes', 'Bytes of pool storage holding data, per service class.', (pool) => pool.usedBytes),
    perClass('weft_pool_provisioned_bytes', 'Sum of the sizes of the volumes in each service class (thin: may exceed capacity).', (pool) => pool.provisionedBytes),
    simple('weft_pool_state', "Whether each class's pool answers: 1 for the state it is in (ok, slow, stalled, lost), 0 for the others.", 'gauge', () =>
      telemetry.pools().flatMap((pool) => POOL_STATES.map((state) => ({ labels: { class: pool.class, state }, value: pool.state === state ? 1 : 0 }))),
    ),
  ];
}

/** weft_sla_objective_*{class}: what each class promises (weftd's config), for rules to compare with what it delivers. */
function objectiveFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  const objective = (name: string, help: string, value: (c: ServiceClass) => number | undefined) =>
    simple(name, help, 'gauge', () =>
      telemetry.classes().flatMap((c) => {
        const promised = value(c);
        return promised === undefined ? [] : [{ labels: { class: c.name }, value: promised }];
      }),
    );
  return [
    objective('weft_sla_objective_read_latency_p99_seconds', 'The 99th percentile of read latency each class promises.', (c) => c.objectives.readLatencyP99Seconds),
    objective('weft_sla_objective_write_latency_p99_seconds', 'The 99th percentile of write latency each class promises.', (c) => c.objectives.writeLatencyP99Seconds),
    objective('weft_sla_objective_availability_ratio', 'The share of requests each class promises to serve without error (0.999 for 99.9%).', (c) => c.objectives.availabilityRatio),
  ];
}

function serviceFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  return [
    simple('weft_nbd_connections', 'Open NBD connections to this node (clients and replication).', 'gauge', () => [{ labels: {}, value: telemetry.nbdConnections() }]),
    simple('weft_nbd_connections_refused_total', 'NBD connections refused because the node had --nbd-max-connections open.', 'counter', () => [{ labels: {}, value: telemetry.nbdRefusedConnections() }]),
    simple('weft_api_requests_total', 'Control API calls answered, by method and gRPC status code.', 'counter', () =>
      telemetry.apiCalls().map((call) => ({ labels: { method: call.method, code: call.code }, value: call.latency.count })),
    ),
    latencyHistogram('weft_api_request_seconds', 'Time to answer a control API call, by method and gRPC status code.', () =>
      telemetry.apiCalls().map((call) => ({ labels: { method: call.method, code: call.code }, latency: call.latency })),
    ),
    simple('weft_journal_bytes', 'Bytes in the metadata journals a restart would replay (a checkpoint drops them).', 'gauge', () => [{ labels: {}, value: telemetry.journal().bytes }]),
    latencyHistogram('weft_journal_checkpoint_seconds', 'Time each metadata checkpoint took, from its start to its file written (I/O pauses only for its cut).', () => [
      { labels: {}, latency: telemetry.journal().checkpoints },
    ]),
  ];
}

/** A summary: quantiles of the delays since the previous scrape; _sum and _count since weftd started. */
function eventLoopFamily(telemetry: NodeTelemetry): ScrapedFamily {
  const name = 'weft_event_loop_delay_seconds';
  return new ScrapedFamily(name, "How late weftd's event loop ran its timers (every NBD reply and API call waits as long).", 'summary', (): Sample[] => {
    const delay = telemetry.eventLoopDelay();
    return [
      { labels: { quantile: 0.5 }, value: delay.p50Seconds },
      { labels: { quantile: 0.99 }, value: delay.p99Seconds },
      { labels: { quantile: 1 }, value: delay.maxSeconds },
      { metricName: `${name}_sum`, labels: {}, value: delay.sumSeconds },
      { metricName: `${name}_count`, labels: {}, value: delay.count },
    ];
  });
}
