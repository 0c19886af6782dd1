// Per-replica families of the replicated volumes this node serves as primary (the only node that
// knows how far behind each copy is): they move with the primary on a failover, so a query
// aggregates them without double counting.

import type { NodeTelemetry, ReplicatedVolumeReport } from '../../fabric/telemetry';
import { simple, type ScrapedFamily } from './family';

const STATES = ['in-sync', 'out', 'resyncing', 'failed'] as const;

type Remote = ReplicatedVolumeReport['remotes'][number];

/** Done share of the resync under way; 1 for a copy with nothing to copy, 0 for one whose resync has not started. */
export function resyncProgress(remote: Remote): number {
  if (remote.resyncTotalBytes > 0) return (remote.resyncTotalBytes - remote.behindBytes) / remote.resyncTotalBytes;
  return remote.behindBytes === 0 ? 1 : 0;
}

export function replicaFamilies(telemetry: NodeTelemetry): ScrapedFamily[] {
  const perRemote = (name: string, help: string, type: 'counter' | 'gauge', value: (remote: Remote) => number) =>
    simple(name, help, type, () =>
      telemetry.replicatedVolumes().flatMap((v) => v.remotes.map((remote) => ({ labels: { volume: v.volume, replica: remote.node }, value: value(remote) }))),
    );
  return [
    simple('weft_volume_epoch', 'The epoch of each replicated volume this node serves as primary (raised by every failover).', 'gauge', () =>
      telemetry.replicatedVolumes().map((v) => ({ labels: { volume: v.volume }, value: v.epoch })),
    ),
    simple('weft_replica_state', 'State of each copy of the replicated volumes this node serves as primary, as the cluster store has it: 1 for the current state.', 'gauge', () =>
      telemetry
        .replicatedVolumes()
        .flatMap((v) => v.copies.flatMap((copy) => STATES.map((state) => ({ labels: { volume: v.volume, replica: copy.node, state }, value: copy.state === state ? 1 : 0 })))),
    ),
    perRemote('weft_replica_behind_bytes', 'Bytes a copy lacks (out) or has still to receive (resyncing), per remote copy of the volumes this node serves as primary.', 'gauge', (r) => r.behindBytes),
    perRemote('weft_replica_resync_size_bytes', 'Size of the resync under way to a copy (0 when none): (size - behind) of it is done.', 'gauge', (r) => r.resyncTotalBytes),
    perRemote('weft_replica_resync_copied_bytes_total', 'Bytes copied to a copy by resyncs since this node started serving the volume as primary.', 'counter', (r) => r.resyncCopiedBytes),
    perRemote('weft_replica_resync_progress_ratio', 'Done share of the resync under way to a copy (1 when it has nothing to receive).', 'gauge', resyncProgress),
  ];
}
