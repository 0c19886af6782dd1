// One control operation's changes to the catalog and the block maps: layers made, dropped and
// merged. It commits whole (one CONTROL journal record, made durable) or, if it fails, is undone in
// memory, and its record, if appended, is cancelled in the journal; controlFailure says which to the caller.

import { performance } from 'node:perf_hooks';
import { withDeadline } from '../deadline';
import { IoError, resourceExhausted, WeftError } from '../errors';
import { FIRST_PHYSICAL, type BlockMap } from './block-map';
import { Catalog, CatalogEdit, LayerRecord } from './catalog';
import type { MapChange } from './journal-records';
import type { NodeStore } from './node-store';

/** A pool whose syncs have been slow this long, without a break, has a disk that may have stopped answering. */
const STALLED_POOL_MS = 5000;

/** Why a commit gave up on pools' syncs (controlFailure adds whether it was undone). */
function stalledPools(pools: string[]): IoError {
  return new IoError('EIO', `pool ${pools.join(', ')}: its disk has not finished a sync within ${STALLED_POOL_MS / 1000} s (it may have stopped answering; try again later)`);
}

/** Why a commit is refused before it has tried anything. */
function knownStalled(pools: string[]): WeftError {
  return new WeftError('UNAVAILABLE', `pool ${pools.join(', ')}: its disk has not finished a sync for over ${STALLED_POOL_MS / 1000} s (it may have stopped answering); nothing changed, try again later`);
}

export class ControlTxn {
  readonly catalog: CatalogEdit;
  /** Map entries it set (merges), with the entries they replaced. */
  private readonly maps: (MapChange & { previousValue: number; previousCrc: number })[] = [];
  /** Maps of the layers it removed. */
  private readonly removedMaps = new Map<number, BlockMap>();
  /** Blocks it frees once its record is durable. */
  private readonly frees: { pool: string; block: number }[] = [];
  /** Sequence number of its journal record, once appended, and a journal position before it. */
  private seq: number | undefined;
  private mark = 0;
  /** A merge moved a volume head's entries, whose writes may not be durable yet. */
  private movedHeadEntries = false;
  /**
   * The pools whose completed writes its commit must find durable: that of a volume head it
   * freezes (a snapshot), and of head entries it merges. A snapshot's layer was made durable when
   * it was taken (a clone or revert builds on it without a sync). The others' syncs are not waited
   * for, so that a pool that is lost, or whose disk hangs, stops the control operations that need
   * its data only (a create makes an empty layer: it needs none).
   */
  private readonly pools = new Set<string>();
  /** Hidden layers left unmerged: moving the entries of the smaller map would not fit in one record. */
  readonly mergesLeft: { layer: number; entries: number }[] = [];

  constructor(private readonly store: NodeStore) {
    this.catalog = new CatalogEdit(store.catalog);
  }

  newLayer(poolClass: string, parent: number | null): LayerRecord {
    const layer: LayerRecord = { id: this.store.catalog.nextLayerId++, pool: poolClass, parent };
    this.catalog.add('layer', layer);
    if (parent !== null && this.isHead(parent)) this.pools.add(layerById(this.store.catalog, parent).pool);
    this.store.metadata.mapOf(layer.id);
    return layer;
  }

  /** Removes a layer nothing needs any more (a volume head) and collects its parent. */
  dropLayer(id: number): void {
    const layer = layerById(this.store.catalog, id);
    const frees = this.frees;
    // The blocks become free once the record that removes the layer is durable (commit).
    this.store.metadata.mapOf(layer.id).forEach((_block, value) => {
      if (value >= FIRST_PHYSICAL) frees.push({ pool: layer.pool, block: value - FIRST_PHYSICAL });
    });
    this.removeLayer(layer);
    if (layer.parent !== null) this.collectLayer(layer.parent);
  }

  /**
   * A hidden layer (deleted snapshot) with no children is freed; with one child it is merged
   * into that child (entries the child lacks move down, the rest are freed); with several, or one
   * in another pool, it stays, since they still read through it.
   */
  collectLayer(id: number): void {
    const layer = layerById(this.store.catalog, id);
    if (!layer.hidden) return;
    const children = this.store.catalog.layers.filter((l) => l.parent === id);
    if (children.length === 0) this.dropLayer(id);
    // Merged entries keep pointing into the layer's pool: only a child in the same pool can take them.
    else if (children.length === 1 && children[0].pool === layer.pool) {
      const entries = Math.min(this.store.metadata.mapOf(layer.id).size, this.store.metadata.mapOf(children[0].id).size);
      // Too many for one record: the layer stays, as with several children, until its child goes.
      if (entries > this.store.maxMergeEntries) this.mergesLeft.push({ layer: id, entries });
      else this.merge(layer, children[0]);
    }
  }

  /** Journals the operation and makes it, and every completed write in the pools it touches, durable. */
  async commit(): Promise<void> {
    // This runs within the control operations' turn: waiting long for a pool whose disk has stopped
    // answering would hold them all. One known stalled is refused at once; one that turns slow now
    // is waited for, up to STALLED_POOL_MS in all.
    const pools = [...this.pools];
    const stalled = pools.filter((p) => this.store.slowForMs(p) > STALLED_POOL_MS);
    if (stalled.length > 0) throw knownStalled(stalled);
    const deadline = performance.now() + STALLED_POOL_MS;
    // Only a pool's sync is given up on: a commit that needs none waits for the journal as any flush.
    const late = () => {
      const slow = pools.filter((p) => this.store.slowForMs(p) > 0);
      return stalledPools(slow.length > 0 ? slow : pools);
    };
    const durable = () => {
      const flushed = this.store.flushPools(this.pools);
      return pools.length === 0 ? flushed : withDeadline(flushed, Math.max(0, deadline - performance.now()), late);
    };
    // A merged entry is not checked against its data at recovery: the data must be durable before
    // the record that moves it or frees what it shadows. A head's recent writes may not be (a
    // snapshot's are: its creation synced them, as it makes a layer in their pool).
    if (this.movedHeadEntries) await durable();
    this.mark = this.store.metadata.appendMark();
    const seq = this.store.metadata.recordControl(this.catalog.changes(), this.maps);
    this.seq = seq;
    // Given up on in time, the record is cancelled (rollback), even if it has reached the journal.
    await durable();
    // Registered only once the commit has succeeded: a client's FLUSH running meanwhile could make the
    // record durable and release them, and should this commit's own flush then fail, the rollback
    // would bring back layers whose blocks were already free. Released at once if a SYNC covers the
    // record; if a write in flight elsewhere held the SYNC below it, at a later flush, as any free.
    for (const f of this.frees) this.store.pool(f.pool).allocator.freeAfterSync(f.block, seq);
    this.store.releaseSynced();
  }

  /**
   * Undoes the operation in memory, and in the journal if its record was appended: the cancel
   * record is made durable before the caller hears of the failure, so that a crash, or a power cut,
   * after the answer does not bring the operation back (a client's FLUSH meanwhile may have made
   * the operation's record durable). Resolves false if that could not be done: its record may be in
   * the journal file without the cancel (any record written later follows the cancel, which is kept
   * in memory, in order).
   */
  async rollback(): Promise<boolean> {
    const { metadata } = this.store;
    this.catalog.undo();
    for (let i = this.maps.length - 1; i >= 0; i--) {
      const m = this.maps[i];
      metadata.mapOf(m.layer).set(m.block, m.previousValue, m.previousCrc);
    }
    for (const [id, map] of this.removedMaps) metadata.maps.set(id, map);
    const live = new Set(this.store.catalog.layers.map((l) => l.id));
    for (const id of metadata.maps.keys()) if (!live.has(id)) metadata.maps.delete(id);
    if (this.seq !== undefined) {
      // In order after the record it cancels, before anything appended later; if this sync fails
      // too, the next one retries both. A record that never reached the file is sealed into one
      // frame with its cancel: it cannot come back, not even by a power cut during a later write.
      metadata.recordCancel(this.seq);
      let together = false;
      try {
        together = metadata.sealTogetherFrom(this.mark);
      } catch {
        // Too much waits for a sync that keeps failing to seal more: then it may come back.
      }
      const cancelDurable = await metadata.sync().then(
        () => true,
        () => false,
      );
      return cancelDurable || together;
    }
    return true;
  }

  /**
   * Merges a hidden layer with its only child, at the cost of the smaller of the two: the larger
   * map takes the smaller's entries (the child's win). An old snapshot that earlier merges made
   * large is not copied into a small child on every deletion (that cost grew with the volume's
   * history and stalled the event loop).
   */
  private merge(layer: LayerRecord, child: LayerRecord): void {
    if (this.store.metadata.mapOf(child.id).size < this.store.metadata.mapOf(layer.id).size) this.absorbChild(layer, child);
    else this.mergeInto(layer, child);
  }

  /** The hidden layer takes its child's entries and its place (references to the child move to it). */
  private absorbChild(layer: LayerRecord, child: LayerRecord): void {
    const map = this.store.metadata.mapOf(layer.id);
    if (this.isHead(child.id)) this.movedHead(child);
    this.store.metadata.mapOf(child.id).forEach((block, value, crc) => {
      const old = map.value(block);
      if (old >= FIRST_PHYSICAL) this.frees.push({ pool: layer.pool, block: old - FIRST_PHYSICAL });
      this.maps.push({ layer: layer.id, block, value, crc, previousValue: old, previousCrc: map.crc(block) });
      map.set(block, value, crc);
    });
    const catalog = this.store.catalog;
    for (const v of catalog.volumes.filter((r) => r.head === child.id)) this.catalog.change('volume', v).head = layer.id;
    for (const s of catalog.snapshots.filter((r) => r.layer === child.id)) this.catalog.change('snapshot', s).layer = layer.id;
    for (const l of catalog.layers.filter((r) => r.parent === child.id)) this.catalog.change('layer', l).parent = layer.id;
    const taken = this.catalog.change('layer', layer);
    if (child.hidden) taken.hidden = true;
    else delete taken.hidden;
    this.removeLayer(child);
  }

  private mergeInto(layer: LayerRecord, child: LayerRecord): void {
    const map = this.store.metadata.mapOf(layer.id);
    const childMap = this.store.metadata.mapOf(child.id);
    // A head's entry that shadows one freed here may be a write whose data is not durable yet:
    // rolled back at recovery, it would fall through to an older layer, the freed entry gone.
    if (this.isHead(child.id)) this.movedHead(child);
    map.forEach((block, value, crc) => {
      if (childMap.value(block) === 0) {
        this.maps.push({ layer: child.id, block, value, crc, previousValue: 0, previousCrc: childMap.crc(block) });
        childMap.set(block, value, crc);
      } else if (value >= FIRST_PHYSICAL) {
        this.frees.push({ pool: layer.pool, block: value - FIRST_PHYSICAL });
      }
    });
    this.catalog.change('layer', child).parent = layer.parent;
    this.removeLayer(layer);
  }

  private isHead(layerId: number): boolean {
    return this.store.catalog.volumes.some((v) => v.head === layerId);
  }

  private movedHead(head: LayerRecord): void {
    this.movedHeadEntries = true;
    this.pools.add(head.pool);
  }

  private removeLayer(layer: LayerRecord): void {
    this.catalog.remove('layer', layer);
    this.removedMaps.set(layer.id, this.store.metadata.mapOf(layer.id));
    this.store.metadata.maps.delete(layer.id);
  }
}

export function layerById(catalog: Catalog, id: number): LayerRecord {
  const layer = catalog.layers.find((l) => l.id === id);
  if (!layer) throw new Error(`catalog damaged: layer ${id} is missing`);
  return layer;
}

/** The layer and its ancestors: what collecting garbage from it may merge or drop. */
export function lineage(catalog: Catalog, id: number): Set<number> {
  const ids = new Set<number>();
  for (let at: number | null = id; at !== null; at = layerById(catalog, at).parent) ids.add(at);
  return ids;
}

/**
 * A failed control operation's error as the caller sees it: its own if it refused, else what the
 * metadata disk said, with the news that nothing changed.
 */
export function controlFailure(err: unknown, undone: boolean): unknown {
  if (err instanceof WeftError) return err;
  const outcome = undone
    ? 'the operation was undone, nothing changed'
    : 'the operation was undone, but the journal could not record that yet: should weftd stop before it can, the operation may be found done (whole) at the next start';
  const message = `${err instanceof Error ? err.message : String(err)}; ${outcome}`;
  if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return resourceExhausted(`the metadata disk is full: ${message}`);
  if ((err as NodeJS.ErrnoException).code !== undefined || err instanceof IoError) return new WeftError('UNAVAILABLE', `could not be made durable: ${message}`);
  return err;
}
