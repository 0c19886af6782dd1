// What a control operation changes in an engine's catalog (volumes, snapshots, layers), as one
// string: a control operation that failed must leave it exactly as it was (issue 7: it commits in
// full or leaves nothing behind).

import type { LocalEngine } from '../../fabric/volume/local-engine';

export function controlState(engine: LocalEngine): string {
  return objectState(engine, () => true, true);
}

/**
 * The same, of the volumes and snapshots (VOL@SNAP) named only: what one control operation may
 * change while others run. Layer ids are left out: the layers others add and drop are theirs, and a
 * merge by another may give a volume's head or a snapshot the id of the layer that absorbed it.
 */
export function controlStateOf(engine: LocalEngine, names: ReadonlySet<string>): string {
  return objectState(engine, (name) => names.has(name), false);
}

function objectState(engine: LocalEngine, named: (name: string) => boolean, layers: boolean): string {
  const catalog = engine.metadata.catalog;
  return JSON.stringify({
    volumes: catalog.volumes.filter((v) => named(v.name)).map((v) => [v.name, v.sizeBytes, layers ? v.head : null, v.class, v.sourceSnapshot ?? null]),
    snapshots: catalog.snapshots.filter((s) => named(`${s.volume}@${s.name}`)).map((s) => [s.volume, s.name, layers ? s.layer : null, s.sizeBytes]),
    layers: layers ? catalog.layers.map((l) => [l.id, l.parent, l.pool, l.hidden ?? false]) : [],
  });
}

/** The first difference between two control states, for a failure message. */
export function stateDifference(before: string, after: string): string {
  const was = JSON.parse(before) as Record<string, unknown[]>;
  const is = JSON.parse(after) as Record<string, unknown[]>;
  for (const key of Object.keys(was)) {
    const gone = was[key].filter((x) => !is[key].some((y) => JSON.stringify(y) === JSON.stringify(x)));
    const added = is[key].filter((x) => !was[key].some((y) => JSON.stringify(y) === JSON.stringify(x)));
    if (gone.length + added.length > 0) return `${key}: expected unchanged, found removed ${JSON.stringify(gone)}, added ${JSON.stringify(added)}`;
  }
  return 'unchanged';
}
