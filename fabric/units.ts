// Sizes with units, as users type them ("512MiB", "10G", "4096") and as tables show them.

const UNIT_BYTES: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
  p: 1024 ** 5, pb: 1000 ** 5, pib: 1024 ** 5,
};

/**
 * Parses "512MiB", "10G" (binary, as qemu-img and dd read it), "1.5GiB", "1GB" (decimal), "4096".
 * Throws an Error with a readable message on anything else.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNIT_BYTES[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new Error(`invalid size "${text}": use a number with an optional unit, e.g. 512MiB, 10G, 1TiB`);
  }
  if (unit === 1 && match[1].includes('.')) throw new Error(`invalid size "${text}": a number of bytes is whole`);
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size "${text}": too large`);
  return bytes;
}

/** 1073741824 -> "1 GiB", 1536 -> "1.5 KiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const fixed = i === 0 ? String(value) : value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2);
  // Trailing zeros after the point go ("1.50" -> "1.5", "2.00" -> "2"), never those of a whole number.
  const text = fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
  return `${text} ${units[i]}`;
}
