// What the engine answers from its catalog without changing it: lookups, the checks a request must
// pass before a control operation changes anything, and the info the API shows.

import { alreadyExists, failedPrecondition, invalidArgument, notFound, resourceExhausted } from '../errors';
import { wholeBlocks } from '../store/block-size';
import type { Catalog, LayerRecord, SnapshotRecord, VolumeRecord } from './catalog';
import { layerById } from './control-txn';
import { defaultClass } from './default-class';
import type { NodeStore } from './node-store';
import { BLOCK_BYTES, LayerInfo, MAX_VOLUME_BYTES, SnapshotInfo, VolumeInfo } from './types';
import type { Volume } from './volume';

/** The engine's volume objects, when they exist (for connections and checksum errors). */
export interface VolumeObjects {
  volume(name: string): Volume | undefined;
  snapshot(volume: string, name: string): Volume | undefined;
}

export interface CatalogIndex {
  layers: Map<number, LayerRecord>;
  snapshotOfLayer: Map<number, SnapshotRecord>;
  snapshotCounts: Map<string, number>;
}

export class CatalogView {
  constructor(private readonly store: NodeStore, private readonly objects: VolumeObjects) {}

  private get catalog(): Catalog {
    return this.store.catalog;
  }

  checkNameFree(name: string): void {
    if (this.catalog.volumes.some((v) => v.name === name)) throw alreadyExists(`volume ${name} already exists`);
    const orphans = this.catalog.snapshots.filter((s) => s.volume === name).map((s) => s.name);
    if (orphans.length > 0) {
      throw alreadyExists(`snapshots of an earlier volume named ${name} still exist (${orphans.join(', ')}): delete them or choose another name`);
    }
  }

  findVolume(name: string): VolumeRecord {
    const record = this.catalog.volumes.find((v) => v.name === name);
    if (!record) throw notFound(`volume ${name} does not exist`);
    return record;
  }

  findSnapshot(volume: string, name: string): SnapshotRecord {
    const snapshot = this.catalog.snapshots.find((s) => s.volume === volume && s.name === name);
    if (!snapshot) throw notFound(`snapshot ${volume}@${name} does not exist`);
    return snapshot;
  }

  resolveClass(requested: string | undefined): string {
    if (this.store.pools.size === 0) {
      throw failedPrecondition('this node has no pool (weftd --pool none), so it holds no volume: create one of the cluster (with replicas or a locality), placed on nodes with pools');
    }
    if (requested) {
      if (!this.store.pools.has(requested)) {
        throw invalidArgument(`no pool of class "${requested}" on this node (pools: ${[...this.store.pools.keys()].join(', ')})`);
      }
      return requested;
    }
    const chosen = defaultClass([...this.store.pools.keys()]);
    if (chosen) return chosen;
    throw invalidArgument(`several pools exist (${[...this.store.pools.keys()].join(', ')}); name one with a class`);
  }

  /** Sizes are rounded up to whole 4 KiB blocks. */
  checkSize(sizeBytes: number): number {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw invalidArgument(`size must be a positive number of bytes, got ${sizeBytes}`);
    }
    const rounded = wholeBlocks(sizeBytes);
    if (rounded > MAX_VOLUME_BYTES) throw invalidArgument(`size ${sizeBytes} is larger than a volume can be: at most ${MAX_VOLUME_BYTES} bytes (16 TiB less 64 KiB)`);
    return rounded;
  }

  /** Thin provisioning: one volume may not exceed its pool, though all of them together may. */
  checkFits(poolClass: string, sizeBytes: number): void {
    const capacity = this.store.pool(poolClass).totalBlocks * BLOCK_BYTES;
    if (sizeBytes > capacity) {
      throw resourceExhausted(`a volume of ${sizeBytes} bytes does not fit in pool ${poolClass} (${capacity} bytes)`);
    }
  }

  /** index: build one for many volumes (listVolumes): a lookup per layer would search the whole catalog. */
  volumeInfo(record: VolumeRecord, index = this.index()): VolumeInfo {
    // A volume made by the running control operation gets its object when the operation ends.
    const volume = this.objects.volume(record.name);
    return {
      name: record.name,
      class: record.class,
      sizeBytes: record.sizeBytes,
      allocatedBytes: this.store.metadata.mapOf(record.head).physicalBlocks * BLOCK_BYTES,
      sourceSnapshot: record.sourceSnapshot,
      snapshotCount: index.snapshotCounts.get(record.name) ?? 0,
      connections: volume?.connections ?? 0,
      checksumErrors: volume?.replica.checksumErrors ?? 0,
      epoch: record.epoch ?? 0,
      createdAt: record.createdAt,
      layers: this.layersOf(record.head, index),
    };
  }

  layersOf(head: number, index = this.index()): LayerInfo[] {
    const layers: LayerInfo[] = [];
    for (let id: number | null = head; id !== null; ) {
      const layer = this.layerOf(id, index);
      const snapshot = index.snapshotOfLayer.get(id);
      layers.push({
        ...(snapshot && { snapshot: { volume: snapshot.volume, name: snapshot.name } }),
        ...(layer.hidden && { deleted: true }),
        class: layer.pool,
        allocatedBytes: this.store.metadata.mapOf(id).physicalBlocks * BLOCK_BYTES,
      });
      id = layer.parent;
    }
    return layers;
  }

  /** Throws as layerById does when the catalog lacks it. */
  private layerOf(id: number, index: CatalogIndex): LayerRecord {
    return index.layers.get(id) ?? layerById(this.catalog, id);
  }

  /** The catalog's layers by id, snapshots by layer, and snapshot counts by volume, as of now. */
  index(): CatalogIndex {
    const snapshotCounts = new Map<string, number>();
    const snapshotOfLayer = new Map<number, SnapshotRecord>();
    for (const s of this.catalog.snapshots) {
      snapshotCounts.set(s.volume, (snapshotCounts.get(s.volume) ?? 0) + 1);
      if (!snapshotOfLayer.has(s.layer)) snapshotOfLayer.set(s.layer, s);
    }
    return { layers: new Map(this.catalog.layers.map((l) => [l.id, l])), snapshotOfLayer, snapshotCounts };
  }

  snapshotInfo(snapshot: SnapshotRecord, index = this.index()): SnapshotInfo {
    return {
      volume: snapshot.volume,
      name: snapshot.name,
      sizeBytes: snapshot.sizeBytes,
      exclusiveBytes: this.store.metadata.mapOf(snapshot.layer).physicalBlocks * BLOCK_BYTES,
      createdAt: snapshot.createdAt,
      class: this.layerOf(snapshot.layer, index).pool,
      checksumErrors: this.objects.snapshot(snapshot.volume, snapshot.name)?.replica.checksumErrors ?? 0,
    };
  }
}
