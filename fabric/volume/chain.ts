// A volume's (or a snapshot's) chain of layers, from its head to the oldest ancestor. Each layer
// has its own block map and lives in its own pool: a clone made in another class writes to that
// class's pool and reads unchanged blocks from the snapshot's pool.

import { settleAll } from '../store/file-io';
import type { Pool } from '../store/pool';
import { ABSENT, BlockMap, CHUNK_ENTRIES, FIRST_PHYSICAL, ZERO } from './block-map';
import { BLOCK_BYTES } from '../store/block-size';

const B = BLOCK_BYTES;

export interface ChainLayer {
  /** Layer id in the catalog; journal records name it. */
  id: number;
  map: BlockMap;
  pool: Pool;
}

export class Chain {
  /** layers[0] is the head, the only one written. */
  constructor(readonly layers: readonly ChainLayer[]) {
    if (layers.length === 0) throw new Error('chain: a chain has at least its head');
  }

  get head(): ChainLayer {
    return this.layers[0];
  }

  has(layerId: number): boolean {
    return this.layers.some((l) => l.id === layerId);
  }

  /** The value of a block as the volume sees it: physical, ZERO, or ABSENT. */
  resolve(block: number): number {
    const layers = this.layers;
    for (let i = 0; i < layers.length; i++) {
      const value = layers[i].map.value(block);
      if (value !== ABSENT) return value;
    }
    return ABSENT;
  }

  /** The layer that decides the block, or undefined where none does. */
  layerOf(block: number): ChainLayer | undefined {
    return this.layers.find((l) => l.map.value(block) !== ABSENT);
  }

  /**
   * Looks up [first, first + values.length): values[i], crcs[i] and layers[i] get the entry of the
   * topmost layer that has one, and its index in the chain (ABSENT where none has). Walks chunk by
   * chunk, layer by layer.
   */
  resolveRange(first: number, values: Uint32Array, crcs: Uint32Array, layerIndex: Uint32Array): void {
    const end = first + values.length;
    for (let l = 0; l < this.layers.length; l++) {
      const map = this.layers[l].map;
      for (let block = first; block < end; ) {
        const chunkEnd = Math.min(end, (Math.floor(block / CHUNK_ENTRIES) + 1) * CHUNK_ENTRIES);
        const chunk = map.chunk(block);
        if (chunk) {
          for (; block < chunkEnd; block++) {
            const i = block - first;
            const value = chunk.values[block % CHUNK_ENTRIES];
            if (values[i] === ABSENT && value !== ABSENT) {
              values[i] = value;
              crcs[i] = chunk.crcs[block % CHUNK_ENTRIES];
              layerIndex[i] = l;
            }
          }
        }
        block = chunkEnd;
      }
    }
  }

  /**
   * Reads the blocks from first on into buf (whole blocks), each from the pool of the layer that
   * maps it, one read per run that is contiguous in one pool; unmapped blocks read as zeroes.
   * values, crcs and layerIndex (the caller's scratch, one entry per block) get what resolveRange()
   * gives, for the caller to check.
   */
  async read(first: number, buf: Buffer, values: Uint32Array, crcs: Uint32Array, layerIndex: Uint32Array): Promise<void> {
    const count = values.length;
    const layers = this.layers;
    this.resolveRange(first, values, crcs, layerIndex);
    const reads: Promise<void>[] = [];
    let runIndex = 0;
    let runPhysical = -1;
    let runLength = 0;
    let runPool: Pool | undefined;
    // One pass past the end (i === count) ends the last run.
    for (let i = 0; i <= count; i++) {
      const value = i < count ? values[i] : ABSENT;
      const physical = value - FIRST_PHYSICAL;
      const pool = value >= FIRST_PHYSICAL ? layers[layerIndex[i]].pool : undefined;
      if (runLength > 0 && pool === runPool && physical === runPhysical + runLength) {
        runLength++;
        continue;
      }
      if (runLength > 0) reads.push(runPool!.read(runPhysical, buf.subarray(runIndex * B, (runIndex + runLength) * B)));
      runLength = 0;
      if (pool === undefined) {
        // A hole ends the run even if the next block is physically adjacent to it: the run's
        // data goes to consecutive slots, and this slot reads as zeroes.
        if (i < count) buf.fill(0, i * B, (i + 1) * B);
        continue;
      }
      runIndex = i;
      runPhysical = physical;
      runLength = 1;
      runPool = pool;
    }
    if (reads.length === 1) await reads[0];
    else if (reads.length > 1) await settleAll(reads);
  }

  /** Whether a layer below the head holds data (not a hole or zeroes) for the block. */
  parentHasData(block: number): boolean {
    for (let i = 1; i < this.layers.length; i++) {
      const value = this.layers[i].map.value(block);
      if (value !== ABSENT) return value !== ZERO;
    }
    return false;
  }
}
