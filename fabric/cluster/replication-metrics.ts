// Prometheus series of replicated volumes, exported by the node serving each as primary (the only
// one that knows how far behind each copy is): they move with the primary on a failover, so a query
// aggregates them without double counting. Read from the controller at scrape time.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { ReplicaStatus } from '../replication/replicated-device';
import type { ReplicationView, VolumeController } from './volume-controller';
import type { ReplicaState } from './volume-record';

const STATES: ReplicaState[] = ['in-sync', 'out', 'resyncing', 'failed'];

export function registerReplicationMetrics(registry: Registry, controller: VolumeController): void {
  const served = () => controller.served();
  const perReplica = (view: ReplicationView) => (view.replicas ?? []).map((status) => ({ volume: view.record.name, replica: status.id, status }));
  new Gauge({
    name: 'weft_volume_epoch',
    help: 'The epoch of each replicated volume this node serves as primary (raised by every failover).',
    labelNames: ['volume'],
    registers: [registry],
    collect(this: Gauge<'volume'>) {
      this.reset();
      for (const view of served()) this.labels(view.record.name).set(view.record.epoch);
    },
  });
  new Gauge({
    name: 'weft_replica_state',
    help: 'State of each copy of the replicated volumes this node serves as primary, as the cluster store has it: 1 for the current state.',
    labelNames: ['volume', 'replica', 'state'],
    registers: [registry],
    collect(this: Gauge<'volume' | 'replica' | 'state'>) {
      this.reset();
      for (const view of served()) {
        for (const copy of view.record.replicas) for (const state of STATES) this.labels(view.record.name, copy.node, state).set(copy.state === state ? 1 : 0);
      }
    },
  });
  const perReplicaGauge = (name: string, help: string, value: (status: ReplicaStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['volume', 'replica'],
      registers: [registry],
      collect(this: Gauge<'volume' | 'replica'>) {
        this.reset();
        for (const r of served().flatMap(perReplica)) this.labels(r.volume, r.replica).set(value(r.status));
      },
    });
  perReplicaGauge(
    'weft_replica_behind_bytes',
    'Bytes a copy lacks (out) or has still to receive (resyncing), per remote copy of the volumes this node serves as primary.',
    (status) => status.behindBytes,
  );
  perReplicaGauge('weft_replica_resync_size_bytes', 'Size of the resync under way to a copy (0 when none): (size - behind) of it is done.', (status) => status.resyncTotalBytes);
  new Counter({
    name: 'weft_replica_resync_copied_bytes_total',
    help: 'Bytes copied to a copy by resyncs since this node started serving the volume as primary.',
    labelNames: ['volume', 'replica'],
    registers: [registry],
    collect(this: Counter<'volume' | 'replica'>) {
      this.reset();
      for (const r of served().flatMap(perReplica)) this.labels(r.volume, r.replica).inc(r.status.resyncCopiedBytes);
    },
  });
}
