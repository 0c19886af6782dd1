// Loads @kubernetes/client-node, the Kubernetes API client, which is published as an ES module only:
// the CommonJS that tsc emits would turn import() into require(), so this calls the real import().

import type * as ClientNode from '@kubernetes/client-node';

export type { ClientNode };

const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

export async function loadClientNode(): Promise<typeof ClientNode> {
  return (await importEsm('@kubernetes/client-node')) as typeof ClientNode;
}
