// Sizes as users type them and as tables show them (fabric/units.ts).

import { formatSize, parseSize } from '../../fabric/units';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

test.each([
  [0, '0 B'],
  [123, '123 B'],
  [1536, '1.5 KiB'],
  [4096, '4 KiB'],
  [10 * MiB, '10 MiB'],
  [100 * MiB, '100 MiB'],
  [110 * MiB, '110 MiB'],
  [120 * MiB, '120 MiB'],
  [1000 * MiB, '1000 MiB'],
  [1023 * MiB, '1023 MiB'],
  [1.25 * MiB, '1.25 MiB'],
  [10.5 * MiB, '10.5 MiB'],
  [2 * GiB, '2 GiB'],
  [200 * GiB, '200 GiB'],
])('formatSize(%d) is "%s"', (bytes, shown) => {
  expect(formatSize(bytes)).toBe(shown);
});

test.each([
  ['4096', 4096],
  ['512MiB', 512 * MiB],
  ['10G', 10 * GiB],
  ['1.5GiB', 1.5 * GiB],
  ['1GB', 1e9],
  ['1.5KiB', 1536],
])('parseSize("%s") is %d', (text, bytes) => {
  expect(parseSize(text)).toBe(bytes);
});

test.each([['1.5'], ['1.5B'], ['-1'], ['10 GiBs'], ['1e3'], [''], ['9999999999PiB']])('parseSize("%s") is refused with a message', (text) => {
  expect(() => parseSize(text)).toThrow(/invalid size/);
});
