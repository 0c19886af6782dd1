// The TypeScript sources of a folder, for the tests that check which way dependencies point.

import fs from 'node:fs';
import path from 'node:path';

/** Every TypeScript source file under dir, recursively. */
export function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}
