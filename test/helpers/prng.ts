// A small seeded pseudo-random generator (mulberry32) for randomized tests: the same seed gives the
// same sequence on every machine, so a failure found by one run can be replayed exactly.

import { createCipheriv } from 'crypto';

export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** 32 random bits. */
  nextUint32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A number in [0, 1). */
  next(): number {
    return this.nextUint32() / 0x100000000;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** The items in a random order (Fisher-Yates), as a new array. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** Picks a key of weights with probability proportional to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const keys = Object.keys(weights) as K[];
    let total = 0;
    for (const k of keys) total += weights[k];
    let x = this.next() * total;
    for (const k of keys) {
      x -= weights[k];
      if (x < 0) return k;
    }
    return keys[keys.length - 1];
  }

  /**
   * A buffer of length random bytes: AES-CTR keyed from this generator, since generating each word
   * here would dominate the run time of a test that writes hundreds of megabytes.
   */
  bytes(length: number): Buffer {
    const key = this.words(4);
    const iv = this.words(4);
    return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(length));
  }

  private words(count: number): Buffer {
    return Buffer.from(Uint32Array.from({ length: count }, () => this.nextUint32()).buffer);
  }
}
