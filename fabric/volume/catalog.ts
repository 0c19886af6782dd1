// The catalog: which volumes, snapshots, layers and pool members exist. Small and changed only by
// control operations; the block maps of the layers are kept apart (see metadata.ts).

export interface PoolMemberRecord {
  path: string;
  uuid: string;
  blocks: number;
}

export interface PoolRecord {
  class: string;
  members: PoolMemberRecord[];
}

/**
 * A layer is one block map. A volume's head layer takes its writes; a snapshot freezes a layer;
 * reads fall through a layer to its parent. A deleted snapshot whose layer still has several
 * children stays as a hidden layer until it can be merged away.
 */
export interface LayerRecord {
  id: number;
  pool: string;
  parent: number | null;
  hidden?: boolean;
}

export interface VolumeRecord {
  name: string;
  class: string;
  sizeBytes: number;
  head: number;
  createdAt: string;
  sourceSnapshot?: string;
}

export interface SnapshotRecord {
  volume: string;
  name: string;
  layer: number;
  sizeBytes: number;
  createdAt: string;
}

export interface Catalog {
  nextLayerId: number;
  pools: PoolRecord[];
  volumes: VolumeRecord[];
  snapshots: SnapshotRecord[];
  layers: LayerRecord[];
}

export function emptyCatalog(): Catalog {
  return { nextLayerId: 1, pools: [], volumes: [], snapshots: [], layers: [] };
}
