// What `weftd --recover` tells an operator before anything is changed: what is wrong with a data
// dir's metadata, and exactly what starting without the unreadable part would lose.

import * as fs from 'fs';
import { BLOCK_BYTES } from './types';
import { applyChanges, Catalog, CatalogChange } from './catalog';
import { decodeRecords } from './journal-records';
import { Metadata } from './metadata';
import { MetadataDamaged } from './metadata-damaged';
import { inspectMetadata } from './metadata-state';

export interface LossReport {
  /** Undefined when the metadata is intact. */
  problem?: MetadataDamaged;
  /** One line per thing that would be lost. */
  lost: string[];
}

export function reportLoss(metaDir: string): LossReport {
  const state = inspectMetadata(metaDir);
  const problem = state.problem;
  if (!problem) return { lost: [] };
  if (!state.checkpoint) {
    return {
      problem,
      lost: [
        'every volume and snapshot: the checkpoint holds the catalog and the block maps, and the journal alone cannot rebuild them ' +
          '(the pool files keep the blocks, but nothing maps them any more). If you have a copy of meta/checkpoint, put it back instead.',
      ],
    };
  }
  if (state.journals.length === 0) {
    const written = fs.statSync(`${metaDir}/checkpoint`).mtime.toISOString();
    return {
      problem,
      lost: [`every change since the checkpoint was written (${written}): writes flushed since then, and volume and snapshot creates, deletes and resizes`],
    };
  }
  // A journal is damaged at problem.offset, or one was synced after an incomplete one: what precedes
  // it is kept, the intact frames after it (in this journal and later ones) are what would be lost,
  // besides the damaged or missing bytes themselves.
  // The lost control operations are played on a copy of what is kept, to name the layers written.
  const catalog = Metadata.open(metaDir, true).metadata.catalog;
  const lost: string[] = [];
  const blocksByName = new Map<string, number>();
  const wrote = (layer: number, blocks: number) => {
    const name = layerName(catalog, layer);
    blocksByName.set(name, (blocksByName.get(name) ?? 0) + blocks);
  };
  let flushes = 0;
  for (const record of decodeRecords(state.lostFrames)) {
    if (record.type === 'map') wrote(record.layer, 1);
    else if (record.type === 'run') wrote(record.layer, record.crcs.length);
    else if (record.type === 'sync') flushes++;
    else if (record.type === 'control') {
      lost.push(...record.changes.map((c) => describeChange(catalog, c)).filter((line): line is string => !!line));
      applyChanges(catalog, record.changes);
    }
  }
  for (const [name, blocks] of blocksByName) lost.push(`writes to ${name}: ${blocks} block(s) of ${BLOCK_BYTES} bytes`);
  if (flushes > 0) lost.push(`${flushes} flush(es) acknowledged after the damage`);
  lost.push(
    problem.offset === undefined
      ? 'whatever the records missing from the journal before it held (they never reached the disk)'
      : `whatever the damaged bytes from offset ${problem.offset} held (they cannot be read)`,
  );
  return { problem, lost };
}

function describeChange(catalog: Catalog, change: CatalogChange): string | undefined {
  if (change.kind === 'volume') {
    const old = catalog.volumes.find((v) => v.name === change.key);
    if (!change.value) return `the deletion of volume ${change.key} (it would be back)`;
    if (!old) return `volume ${change.key} (created)`;
    if (old.sizeBytes !== change.value.sizeBytes) return `the resize of volume ${change.key} to ${change.value.sizeBytes} bytes`;
    // Otherwise its head layer changed: a snapshot (listed on its own) or a revert.
    return old.sourceSnapshot === change.value.sourceSnapshot ? undefined : `a change of volume ${change.key}`;
  }
  if (change.kind === 'snapshot') return change.value ? `snapshot ${change.key} (created)` : `the deletion of snapshot ${change.key} (it would be back)`;
  return undefined; // layers are how volumes and snapshots are kept, named by them
}

function layerName(catalog: Catalog, layer: number): string {
  const volume = catalog.volumes.find((v) => v.head === layer);
  if (volume) return `volume ${volume.name}`;
  const snapshot = catalog.snapshots.find((s) => s.layer === layer);
  if (snapshot) return `snapshot ${snapshot.volume}@${snapshot.name}`;
  return `layer ${layer} (of a volume deleted since)`;
}
