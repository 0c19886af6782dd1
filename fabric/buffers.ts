// Recycled I/O buffers. A 1 MiB request that allocates a fresh buffer costs page faults and, worse,
// V8 garbage collections driven by the churn of external memory; buffers of the sizes requests use
// are kept and reused instead. Only whole buffers that came from here are taken back.

const MIN_POOLED_BYTES = 64 * 1024;
const MAX_POOLED_BYTES = 8 * 1024 * 1024;
/** Free buffers kept per size, and in all. */
const MAX_FREE_PER_SIZE = 32;
const MAX_FREE_BYTES = 256 * 1024 * 1024;

const free = new Map<number, Buffer[]>();
const ours = new WeakSet<ArrayBufferLike>();
let freeBytes = 0;

function pooled(size: number): boolean {
  return size >= MIN_POOLED_BYTES && size <= MAX_POOLED_BYTES && size % 4096 === 0;
}

/** A buffer of exactly size bytes, uninitialized. */
export function takeBuffer(size: number): Buffer {
  if (!pooled(size)) return Buffer.allocUnsafe(size);
  const reused = free.get(size)?.pop();
  if (reused) {
    freeBytes -= size;
    return reused;
  }
  const fresh = Buffer.allocUnsafeSlow(size); // its own ArrayBuffer, not a slice of Node's shared pool
  ours.add(fresh.buffer);
  return fresh;
}

/**
 * Hands a buffer back for reuse. The caller must not touch it afterwards. Anything that did not
 * come from takeBuffer(), or is only part of such a buffer, is ignored (left to the GC).
 */
export function returnBuffer(buf: Buffer): void {
  if (!ours.has(buf.buffer) || buf.byteOffset !== 0 || buf.length !== buf.buffer.byteLength) return;
  if (freeBytes + buf.length > MAX_FREE_BYTES) return;
  let list = free.get(buf.length);
  if (!list) {
    list = [];
    free.set(buf.length, list);
  }
  if (list.length >= MAX_FREE_PER_SIZE || list.includes(buf)) return;
  list.push(buf);
  freeBytes += buf.length;
}

const ZEROES = Buffer.alloc(64 * 1024);

/** Whether every byte of data is 0 (a copy writes such a range as zeroes, keeping its copy thin). */
export function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROES.length) {
    const part = data.subarray(at, at + ZEROES.length);
    if (!part.equals(ZEROES.subarray(0, part.length))) return false;
  }
  return true;
}
