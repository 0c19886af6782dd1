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
  /**
   * Replication epoch: writes from a replication connection of an older one are refused
   * (epoch-fence.ts). Absent means 0: data dirs written before it existed read as epoch 0.
   */
  epoch?: number;
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

/**
 * One change of a control operation, as the journal records it: the record that replaces (or adds)
 * the one with its key, or the removal of that key. Journaling changes, not the whole catalog,
 * keeps the journal's cost proportional to what an operation did.
 */
export type CatalogChange =
  | { kind: 'volume'; key: string; value?: VolumeRecord }
  | { kind: 'snapshot'; key: string; value?: SnapshotRecord }
  | { kind: 'layer'; key: string; value?: LayerRecord };

type Kind = CatalogChange['kind'];
type RecordOf<K extends Kind> = Required<Extract<CatalogChange, { kind: K }>>['value'];

const KEYS: { [K in Kind]: (record: RecordOf<K>) => string } = {
  volume: (v) => v.name,
  snapshot: (s) => `${s.volume}@${s.name}`,
  layer: (l) => String(l.id),
};

function listOf<K extends Kind>(catalog: Catalog, kind: K): RecordOf<K>[] {
  const lists = { volume: catalog.volumes, snapshot: catalog.snapshots, layer: catalog.layers };
  return lists[kind] as RecordOf<K>[];
}

/** Applies journaled changes (at replay), keeping the order of the records that stay. */
export function applyChanges(catalog: Catalog, changes: CatalogChange[]): void {
  for (const change of changes) {
    const key = KEYS[change.kind] as (record: unknown) => string;
    const list = listOf(catalog, change.kind) as unknown[];
    const at = list.findIndex((r) => key(r) === change.key);
    if (change.value && at >= 0) list[at] = change.value;
    else if (change.value) list.push(change.value);
    else if (at >= 0) list.splice(at, 1);
    if (change.kind === 'layer' && change.value) catalog.nextLayerId = Math.max(catalog.nextLayerId, change.value.id + 1);
  }
}

/**
 * The changes one control operation makes to the catalog: every change goes through it, so that the
 * operation journals exactly what it changed (its cost proportional to the change, not to the
 * catalog) and can be undone if it fails. It keeps the first image of each record it touches.
 */
export class CatalogEdit {
  private readonly before = new Map<string, { kind: Kind; key: string; image: unknown; index: number }>();

  constructor(private readonly catalog: Catalog) {}

  add<K extends Kind>(kind: K, record: RecordOf<K>): void {
    this.touch(kind, KEYS[kind](record));
    listOf(this.catalog, kind).push(record);
  }

  remove<K extends Kind>(kind: K, record: RecordOf<K>): void {
    this.touch(kind, KEYS[kind](record));
    const list = listOf(this.catalog, kind);
    list.splice(list.indexOf(record), 1);
  }

  /** Returns the record, to be changed in place by the caller. */
  change<K extends Kind>(kind: K, record: RecordOf<K>): RecordOf<K> {
    this.touch(kind, KEYS[kind](record));
    return record;
  }

  /** The records as they are now, for the journal. */
  changes(): CatalogChange[] {
    return [...this.before.values()].map(({ kind, key }) => {
      const record = find(this.catalog, kind, key);
      return { kind, key, value: record && structuredClone(record) } as CatalogChange;
    });
  }

  /**
   * Puts every touched record back as it was, and where it was (last touched first). A record that
   * still exists keeps its identity (devices read their size through it). nextLayerId stays: layer
   * ids are never reused.
   */
  undo(): void {
    for (const { kind, key, image, index } of [...this.before.values()].reverse()) {
      const list = listOf(this.catalog, kind) as object[];
      const record = find(this.catalog, kind, key) as object | undefined;
      if (record && image) {
        for (const field of Object.keys(record)) delete (record as Record<string, unknown>)[field];
        Object.assign(record, image);
      } else if (record) {
        list.splice(list.indexOf(record), 1);
      } else if (image) {
        list.splice(index, 0, image as object);
      }
    }
    this.before.clear();
  }

  private touch(kind: Kind, key: string): void {
    const id = `${kind}:${key}`;
    if (this.before.has(id)) return;
    const record = find(this.catalog, kind, key);
    const index = (listOf(this.catalog, kind) as unknown[]).indexOf(record);
    this.before.set(id, { kind, key, image: record && structuredClone(record), index });
  }
}

function find(catalog: Catalog, kind: Kind, key: string): unknown {
  const keyOf = KEYS[kind] as (record: unknown) => string;
  return (listOf(catalog, kind) as unknown[]).find((r) => keyOf(r) === key);
}

