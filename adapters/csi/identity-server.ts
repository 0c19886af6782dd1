// CSI Identity service: who the plugin is (csi.weft.io and Weft's version), what it offers as a
// whole, and whether it is ready (weftd's control API answers).

import * as fs from 'fs';
import type { Logger } from 'pino';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { WeftClient } from '../../fabric/api/client';
import { findAbove } from '../../fabric/source-files';
import { serviceImplementation } from './rpc';

export const PLUGIN_NAME = 'csi.weft.io';

/** Every instance answers the same, whatever roles it serves (the spec requires it). */
const PLUGIN_CAPABILITIES = [
  { service: { type: 'CONTROLLER_SERVICE' } },
  { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
  { volume_expansion: { type: 'ONLINE' } },
];

/** Weft's version, from the package.json at the repository root. */
export function pluginVersion(): string {
  const file = findAbove('package.json', __dirname);
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

export function identityServer(client: WeftClient, logger: Logger): UntypedServiceImplementation {
  const version = pluginVersion();
  return serviceImplementation(
    {
      GetPluginInfo: () => ({ name: PLUGIN_NAME, vendor_version: version, manifest: {} }),
      GetPluginCapabilities: () => ({ capabilities: PLUGIN_CAPABILITIES }),
      // Every RPC goes through weftd's API: ready when it answers, FAILED_PRECONDITION when not.
      Probe: async () => {
        await client.getNodeInfo();
        return { ready: { value: true } };
      },
    },
    logger,
  );
}
