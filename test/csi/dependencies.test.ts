// Dependencies between adapters point one way: adapters/kubernetes (manifests' values) uses the
// CSI driver's plugin name and topology keys, so the driver imports nothing from it.

import * as fs from 'fs';
import * as path from 'path';
import { sources } from '../helpers/sources';
import { findAbove } from '../../fabric/source-files';

it('adapters/csi imports nothing from adapters/kubernetes', () => {
  const csiDir = path.dirname(findAbove('adapters/csi/node-server.ts'));
  const importers = sources(csiDir).filter((file) => /from '(\.\.\/)+kubernetes\//.test(fs.readFileSync(file, 'utf8')));
  expect(importers.map((file) => path.relative(csiDir, file))).toEqual([]);
});
