// The CSI driver as a weftd plugin: started by weftd (--csi-endpoint) once its control API
// listens, it serves Identity plus the controller and/or node roles on the CSI socket.

import * as path from 'path';
import type { Logger } from 'pino';
import { WeftClient } from '../../fabric/api/client';
import type { NodeStatus } from '../../fabric/api/node-info';
import type { CsiRole, CsiSettings } from '../../fabric/config';
import type { DaemonPlugin, PluginContext } from '../../fabric/daemon';
import { allocationJobLookup } from '../nomad/allocation-job';
import { chooseAttacher } from './attach/choose';
import { attachReadOnlyLoop, detachLoop, deviceSizeBytes, loopsBackedBy, processesUsing, refreshLoopCapacity } from './attach/devices';
import * as mount from './attach/mount';
import { ControllerServer } from './controller-server';
import { CsiServer } from './csi-server';
import { identityServer } from './identity-server';
import { NodeServer } from './node-server';
import { NodeStateStore } from './node-state';

/** The node service keeps its state here, in weftd's data dir. */
export function nodeStateDir(dataDir: string): string {
  return path.join(dataDir, 'csi');
}

export function csiPlugin(settings: CsiSettings): DaemonPlugin {
  return { name: 'csi', start: (context) => startCsi(settings, context) };
}

async function startCsi(settings: CsiSettings, { logger, apiEndpoint, apiCalls }: PluginContext): Promise<{ stop(): Promise<void> }> {
  const client = new WeftClient(apiEndpoint);
  try {
    const node = await client.getNodeInfo();
    const roles = servedRoles(settings.role);
    const server = new CsiServer({
      logger,
      calls: apiCalls,
      identity: identityServer(client, logger),
      controller: roles.includes('controller') ? new ControllerServer(client, logger).implementation() : undefined,
      node: roles.includes('node') ? (await openNodeServer(client, node, settings, logger)).implementation() : undefined,
    });
    await server.listen(settings.endpoint);
    logger.info({ endpoint: settings.endpoint, roles }, `CSI driver serving ${roles.join(' and ')}`);
    return {
      stop: async () => {
        await server.close();
        client.close();
      },
    };
  } catch (error) {
    client.close();
    throw error;
  }
}

function servedRoles(role: CsiRole): ('controller' | 'node')[] {
  return role === 'both' ? ['controller', 'node'] : [role];
}

async function openNodeServer(client: WeftClient, node: NodeStatus, settings: CsiSettings, logger: Logger): Promise<NodeServer> {
  const attacher = await chooseAttacher(logger);
  const state = new NodeStateStore(nodeStateDir(node.dataDir));
  const jobOfAllocation = settings.nomadAddr ? allocationJobLookup({ address: settings.nomadAddr }, logger) : undefined;
  return NodeServer.open({ client, attacher, tools: { ...mount, deviceSizeBytes, attachReadOnlyLoop, loopsBackedBy, detachLoop, refreshLoopCapacity, processesUsing }, state, node, logger, jobOfAllocation });
}
