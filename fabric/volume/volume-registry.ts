// The volume objects of a node, one per volume and one per snapshot opened, kept in line with the
// catalog: each has its chain of layers (a pool per layer) and its stack, built once.

import { notFound, WeftError } from '../errors';
import type { Catalog, LayerRecord, SnapshotRecord, VolumeRecord } from './catalog';
import { Chain } from './chain';
import { layerById, lineage } from './control-txn';
import { EpochFence } from './epoch-fence';
import { LocalReplica, type ReplicaControl } from './local-replica';
import type { NodeStore } from './node-store';
import { StackBuilder, Volume, VolumeRef } from './volume';

/** A volume or snapshot object with the catalog record it serves. */
interface Entry<R> {
  volume: Volume;
  record: R;
}

export class VolumeRegistry {
  private readonly volumes = new Map<string, Entry<VolumeRecord>>();
  /** Snapshot objects, made when a snapshot is first opened; keyed by snapshotKey(). */
  private readonly snapshots = new Map<string, Entry<SnapshotRecord>>();

  /** controlFor: the control operations of a volume, as the engine does them. */
  constructor(
    private readonly store: NodeStore,
    private readonly stackFor: StackBuilder,
    private readonly controlFor: (volume: string) => ReplicaControl,
  ) {}

  private get catalog(): Catalog {
    return this.store.catalog;
  }

  /** The object of a volume, if the volume exists (a volume made by a running control operation gets it when that ends). */
  volume(name: string): Volume | undefined {
    return this.volumes.get(name)?.volume;
  }

  /** The object of a snapshot, if it has been opened. */
  openedSnapshot(volume: string, name: string): Volume | undefined {
    return this.snapshots.get(snapshotKey(volume, name))?.volume;
  }

  /** Every volume and open snapshot whose chain shares a layer with the lineage of layer id. */
  sharing(id: number): Volume[] {
    const ids = lineage(this.catalog, id);
    return this.all().filter((v) => v.replica.chain.layers.some((l) => ids.has(l.id)));
  }

  all(): Volume[] {
    return [...this.volumes.values(), ...this.snapshots.values()].map((e) => e.volume);
  }

  /** byId: the catalog's layers by id, when the caller builds many chains at once. */
  private chainOf(head: number, byId?: ReadonlyMap<number, LayerRecord>): Chain {
    const layer = (id: number) => byId?.get(id) ?? layerById(this.catalog, id);
    const layers = [];
    for (let id: number | null = head; id !== null; id = layer(id).parent) {
      layers.push({ id, map: this.store.metadata.mapOf(id), pool: this.store.pool(layer(id).pool) });
    }
    return new Chain(layers);
  }

  /**
   * Brings the volume objects in line with the catalog after a control operation (or its undo):
   * new ones made, deleted ones dropped, every chain rebuilt. The chains of volumes the operation
   * did not pause come out as they were.
   */
  refresh(): void {
    // Indexed once: this runs after every control operation, over every volume of the node.
    const layers = new Map(this.catalog.layers.map((l) => [l.id, l]));
    const volumes = new Map(this.catalog.volumes.map((v) => [v.name, v]));
    for (const [name, entry] of this.volumes) {
      const record = volumes.get(name);
      if (!record) this.volumes.delete(name);
      else entry.record = record;
    }
    for (const record of this.catalog.volumes) {
      const entry = this.volumes.get(record.name);
      if (entry) entry.volume.replica.chain = this.chainOf(record.head, layers);
      else this.volumes.set(record.name, this.makeEntry({ volume: record.name }, record, record.head));
    }
    if (this.snapshots.size === 0) return;
    const snapshots = new Map(this.catalog.snapshots.map((s) => [snapshotKey(s.volume, s.name), s]));
    for (const [key, entry] of this.snapshots) {
      const record = snapshots.get(key);
      if (!record) {
        this.snapshots.delete(key);
      } else {
        entry.record = record;
        entry.volume.replica.chain = this.chainOf(record.layer, layers);
      }
    }
  }

  private makeEntry<R extends { sizeBytes: number }>(ref: VolumeRef, record: R, head: number): Entry<R> {
    const name = ref.snapshot === undefined ? ref.volume : `${ref.volume}@${ref.snapshot}`;
    const entry = { record } as Entry<R>;
    const control = ref.snapshot === undefined ? this.controlFor(ref.volume) : SNAPSHOTS_DO_NOT_CHANGE;
    const replica = new LocalReplica(name, this.store, this.chainOf(head), () => entry.record.sizeBytes, ref.snapshot !== undefined, control);
    const fence = new EpochFence(name, () => (entry.record as Partial<VolumeRecord>).epoch ?? 0);
    entry.volume = new Volume(ref, replica, this.stackFor(replica, ref), fence);
    return entry;
  }

  entry(name: string): Entry<VolumeRecord> {
    const entry = this.volumes.get(name);
    if (!entry) throw notFound(`volume ${name} does not exist`);
    return entry;
  }

  /** The object of a snapshot, made when it is first opened. */
  snapshotEntry(volume: string, name: string): Entry<SnapshotRecord> {
    const key = snapshotKey(volume, name);
    let entry = this.snapshots.get(key);
    if (!entry) {
      const record = this.catalog.snapshots.find((s) => s.volume === volume && s.name === name);
      if (!record) throw notFound(`snapshot ${volume}@${name} does not exist`);
      entry = this.makeEntry({ volume, snapshot: name }, record, record.layer);
      this.snapshots.set(key, entry);
    }
    return entry;
  }
}

function snapshotKey(volume: string, name: string): string {
  return JSON.stringify([volume, name]);
}

/** A snapshot's stack: a snapshot is read-only, and the engine never sends it a control operation. */
const SNAPSHOTS_DO_NOT_CHANGE: ReplicaControl = {
  snapshot: refuse,
  resize: refuse,
  revert: refuse,
};

function refuse(): Promise<void> {
  return Promise.reject(new WeftError('FAILED_PRECONDITION', 'a snapshot does not change: take, resize or revert the volume'));
}
