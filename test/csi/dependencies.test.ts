// Dependencies between adapters point one way: adapters/kubernetes (manifests' values) uses the
// CSI driver's plugin name and topology keys, so the driver imports nothing from it.

import * as fs from 'fs';
import * as path from 'path';
import { findAbove } from '../../fabric/source-files';

/** Every TypeScript source file under dir, recursively. */
function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

it('adapters/csi imports nothing from adapters/kubernetes', () => {
  const csiDir = path.dirname(findAbove('adapters/csi/node-server.ts'));
  const importers = sources(csiDir).filter((file) => /from '(\.\.\/)+kubernetes\//.test(fs.readFileSync(file, 'utf8')));
  expect(importers.map((file) => path.relative(csiDir, file))).toEqual([]);
});
