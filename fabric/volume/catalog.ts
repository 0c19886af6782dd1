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

/** A deep copy, to compare with or to go back to. */
export function copyCatalog(catalog: Catalog): Catalog {
  return structuredClone(catalog);
}

/** What turns before into after (volumes, snapshots and layers; pools change only at startup). */
export function diffCatalog(before: Catalog, after: Catalog): CatalogChange[] {
  const changes: CatalogChange[] = [];
  for (const kind of ['volume', 'snapshot', 'layer'] as const) {
    const key = KEYS[kind] as (record: RecordOf<typeof kind>) => string;
    const old = new Map(listOf(before, kind).map((r) => [key(r), JSON.stringify(r)]));
    const now = new Set<string>();
    for (const record of listOf(after, kind)) {
      const k = key(record);
      now.add(k);
      if (old.get(k) !== JSON.stringify(record)) changes.push({ kind, key: k, value: structuredClone(record) } as CatalogChange);
    }
    for (const k of old.keys()) if (!now.has(k)) changes.push({ kind, key: k });
  }
  return changes;
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
 * Puts the catalog back as it was in before (a control operation failed). Records that exist in both
 * keep their identity (devices read their size through them), with before's fields.
 */
export function restoreCatalog(catalog: Catalog, before: Catalog): void {
  for (const kind of ['volume', 'snapshot', 'layer'] as const) {
    const key = KEYS[kind] as (record: unknown) => string;
    const current = new Map((listOf(catalog, kind) as object[]).map((r) => [key(r), r]));
    const restored = (listOf(before, kind) as object[]).map((old) => {
      const record = current.get(key(old));
      if (!record) return old;
      for (const field of Object.keys(record)) delete (record as Record<string, unknown>)[field];
      return Object.assign(record, old);
    });
    const list = listOf(catalog, kind) as object[];
    list.splice(0, list.length, ...restored);
  }
  catalog.pools = before.pools;
}
