// Run with plain node (not jest): prints the typed models of @kubernetes/client-node as JSON, each
// model's fields (JSON key, type, format) and the fields its declaration marks required.

import fs from 'node:fs';
import path from 'node:path';
import { loadClientNode } from '../../adapters/kubernetes/client-node';

interface GeneratedModel {
  attributeTypeMap: { name: string; baseName: string; type: string; format: string }[];
}

const isModel = (value: unknown): value is GeneratedModel =>
  typeof value === 'function' && Array.isArray((value as unknown as GeneratedModel).attributeTypeMap);

const MODELS_DIR = path.join(path.dirname(require.resolve('@kubernetes/client-node/package.json')), 'dist', 'gen', 'models');

/** The generator writes required fields without "?" ('spec': V1CSIDriverSpec;), optional ones with it. */
function requiredProperties(modelName: string): Set<string> {
  const declaration = path.join(MODELS_DIR, `${modelName}.d.ts`);
  if (!fs.existsSync(declaration)) return new Set();
  const text = fs.readFileSync(declaration, 'utf8');
  return new Set([...text.matchAll(/^\s*'([^']+)': /gm)].map((match) => match[1]));
}

async function main(): Promise<void> {
  const exports = (await loadClientNode()) as unknown as Record<string, unknown>;
  const models: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(exports)) {
    if (!isModel(value)) continue;
    const required = requiredProperties(name);
    models[name] = {
      attributes: value.attributeTypeMap.map(({ baseName, type, format }) => ({ name: baseName, type, format })),
      required: value.attributeTypeMap.filter((attribute) => required.has(attribute.name)).map((attribute) => attribute.baseName),
    };
  }
  process.stdout.write(JSON.stringify(models));
}

void main();
