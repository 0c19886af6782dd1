// Per-volume families: I/O operations, bytes, latency, errors by kind and in-flight requests as the
// metrics layer counts them, and capacity, allocation and checksum failures as the engine has them.
// `volume` is the export name: VOL, or VOL@SNAP for a snapshot. A deleted volume's series are gone at
// the next scrape. Per workload (weft_workload_*): the same I/O families, labelled with the workload
// of each attachment on this node, and weft_volume_info to join on; see workloadFamilies().

import { ERROR_KINDS, OPERATIONS, type IoSeries, type NodeTelemetry, type WorkloadReport } from '../../fabric/telemetry';
import { latencyHistogram, simple, type Labels, type ScrapedFamily } from './family';

/** The I/O families of some series; labels() gives each series' own labels (the volume today). */
export function ioFamilies<S extends IoSeries>(prefix: string, series: () => S[], labels: (io: S) => Labels): ScrapedFamily[] {
  const perOperation = <T>(sample: (labels: Labels, stats: IoSeries['stats'][(typeof OPERATIONS)[number]]) => T[]) =>
    series().flatMap((io) => OPERATIONS.flatMap((operation) => sample({ ...labels(io), operation }, io.stats[operation])));
  return [
    simple(`${prefix}_operations_total`, 'Block operations served (failed ones too), by operation.', 'counter', () =>
      perOperation((l, stats) => [{ labels: l, value: stats.operations }]),
    ),
    simple(`${prefix}_errors_total`, `Block operations that failed, by operation and kind (${ERROR_KINDS.join(', ')}).`, 'counter', () =>
      perOperation((l, stats) => ERROR_KINDS.map((kind, i) => ({ labels: { ...l, kind }, value: stats.errorsByKind[i] }))),
    ),
    simple(`${prefix}_bytes_total`, 'Bytes read and written, by direction.', 'counter', () =>
      series().flatMap((io) => [
        { labels: { ...labels(io), direction: 'read' }, value: io.stats.read.bytes },
        { labels: { ...labels(io), direction: 'write' }, value: io.stats.write.bytes },
      ]),
    ),
    latencyHistogram(`${prefix}_operation_seconds`, 'Time to complete a block operation, by operation.', () =>
      perOperation((l, stats) => (stats.operations === 0 ? [] : [{ labels: l, latency: { count: stats.operations, secondsSum: stats.secondsSum, buckets: stats.buckets } }])),
    ),
    simple(`${prefix}_in_flight_requests`, 'Block operations begun and not yet completed.', 'gauge', () =>
      series().map((io) => ({ labels: labels(io), value: OPERATIONS.reduce((sum, operation) => sum + io.stats[operation].inFlight, 0) })),
    ),
  ];
}

/**
 * weft_volume_info: one series per workload of each volume attached on this node (as the CSI node
 * service recorded it), value 1, to join other series on by volume. weft_workload_*: that volume's
 * I/O on this node with the workload's labels. Cardinality: the attachments of the node times their
 * workloads (a pod per attachment, usually). The workloads of one attachment share its counts: sum
 * weft_volume_* for totals, not these. pvc (the claim's name; namespace is the pod's) and job (the
 * Nomad allocation's) are on weft_volume_info only, to join on; each is empty where the CSI node
 * service did not learn it: a volume not provisioned from a claim, a weftd without --nomad-addr or
 * whose Nomad did not answer.
 */
export function workloadFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  const workloadLabels = (w: WorkloadReport): Labels => ({ volume: w.volume, orchestrator: w.orchestrator, namespace: w.namespace, pod: w.pod, alloc: w.alloc, task: w.task });
  const infoLabels = (w: WorkloadReport): Labels => ({ ...workloadLabels(w), class: w.class, node: telemetry.nodeId, pvc: w.pvc, job: w.job, nomad_job: w.job });
  return [
    simple('weft_volume_info', 'The workloads of each volume attached on this node (value 1), to join on by volume.', 'gauge', () =>
      distinctBy(telemetry.workloads(), infoLabels).map((w) => ({ labels: infoLabels(w), value: 1 })),
    ),
    ...ioFamilies(
      'weft_workload',
      () => distinctBy(telemetry.workloads(), workloadLabels).flatMap((w) => (w.stats ? [{ volume: w.volume, stats: w.stats, workload: w }] : [])),
      (io) => workloadLabels(io.workload),
    ),
  ];
}

/**
 * The first of the workloads with the same labels: two publications that tell the same (two Mesos
 * tasks, neither named) would give one series twice in the scrape, which Prometheus rejects. They
 * share the attachment's counts all the same.
 */
function distinctBy(workloads: WorkloadReport[], labels: (w: WorkloadReport) => Labels): WorkloadReport[] {
  const seen = new Set<string>();
  return workloads.filter((w) => {
    const key = JSON.stringify(labels(w));
    return !seen.has(key) && Boolean(seen.add(key));
  });
}

export function volumeFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  return [
    ...ioFamilies('weft_volume', () => telemetry.volumeIo(), (io) => ({ volume: io.volume })),
    simple('weft_volume_capacity_bytes', 'Size of each volume held on this node, with its service class.', 'gauge', () =>
      telemetry.volumes().map((v) => ({ labels: { volume: v.name, class: v.class }, value: v.sizeBytes })),
    ),
    simple('weft_volume_allocated_bytes', 'Pool space held by the blocks of each volume held on this node (thin: grows as it is written).', 'gauge', () =>
      telemetry.volumes().map((v) => ({ labels: { volume: v.name, class: v.class }, value: v.allocatedBytes })),
    ),
    simple('weft_volume_checksum_errors_total', 'Blocks read or scrubbed whose data did not match its checksum, per volume or VOL@SNAP, since weftd started.', 'counter', () =>
      telemetry.checksumErrors().map((c) => ({ labels: { volume: c.volume }, value: c.errors })),
    ),
  ];
}
