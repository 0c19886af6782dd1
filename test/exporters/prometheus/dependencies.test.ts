// Dependencies point one way (DESIGN.md): the exporter reads fabric's telemetry; fabric imports
// nothing from exporters/, except weftd.ts, the entry point, which loads the exporter as a plugin.

import fs from 'node:fs';
import path from 'node:path';
import { sources } from '../../helpers/sources';
import { findAbove } from '../../../fabric/source-files';

it('fabric imports nothing from exporters/ but in its entry point', () => {
  const fabricDir = path.dirname(findAbove('fabric/daemon.ts'));
  const importers = sources(fabricDir).filter((file) => /(from |import\()'(\.\.\/)+exporters\//.test(fs.readFileSync(file, 'utf8')));
  expect(importers.map((file) => path.relative(fabricDir, file))).toEqual(['weftd.ts']);
});

it('fabric does not use prom-client: the exporter turns its plain counts into families', () => {
  const fabricDir = path.dirname(findAbove('fabric/daemon.ts'));
  expect(sources(fabricDir).filter((file) => fs.readFileSync(file, 'utf8').includes("'prom-client'"))).toEqual([]);
});
