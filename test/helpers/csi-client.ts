// A small typed client of a CSI driver's unix socket for tests: one promise per RPC, the response
// typed by the RPC's name, and failures as gRPC ServiceErrors (code and details) to assert on.

import * as grpc from '@grpc/grpc-js';
import { csiServiceDefinition, type CsiServiceName } from '../../adapters/csi/definition';
import type { Snapshot, StringMap, Topology, Volume, VolumeCondition, VolumeUsage } from '../../adapters/csi/messages';

type Capabilities<Type extends string> = { capabilities: ({ rpc: { type: Type } } & Record<string, unknown>)[] };

/** Each RPC's response, as proto-loader decodes it (snake_case, int64 as number, enums by name). */
export interface CsiResponses {
  GetPluginInfo: { name: string; vendor_version: string; manifest: StringMap };
  GetPluginCapabilities: { capabilities: { service?: { type: string } | null; volume_expansion?: { type: string } | null; type: string }[] };
  Probe: { ready: { value: boolean } | null };
  CreateVolume: { volume: Volume };
  DeleteVolume: Record<string, never>;
  ControllerPublishVolume: { publish_context: StringMap };
  ValidateVolumeCapabilities: { confirmed: { volume_context: StringMap; volume_capabilities: unknown[]; parameters: StringMap } | null; message: string };
  ListVolumes: { entries: { volume: Volume; status: { published_node_ids: string[]; volume_condition: VolumeCondition | null } | null }[]; next_token: string };
  ControllerGetVolume: { volume: Volume; status: { published_node_ids: string[]; volume_condition: VolumeCondition | null } };
  GetCapacity: { available_capacity: number; maximum_volume_size: { value: number } | null };
  ControllerGetCapabilities: Capabilities<string>;
  CreateSnapshot: { snapshot: Snapshot };
  DeleteSnapshot: Record<string, never>;
  ListSnapshots: { entries: { snapshot: Snapshot }[]; next_token: string };
  GetSnapshot: { snapshot: Snapshot };
  ControllerExpandVolume: { capacity_bytes: number; node_expansion_required: boolean };
  NodeStageVolume: Record<string, never>;
  NodeUnstageVolume: Record<string, never>;
  NodePublishVolume: Record<string, never>;
  NodeUnpublishVolume: Record<string, never>;
  NodeGetVolumeStats: { usage: VolumeUsage[]; volume_condition: VolumeCondition | null };
  NodeExpandVolume: { capacity_bytes: number };
  NodeGetCapabilities: Capabilities<string>;
  NodeGetInfo: { node_id: string; max_volumes_per_node: number; accessible_topology: Topology | null };
}

export type CsiMethod = keyof CsiResponses;

const IDENTITY: CsiMethod[] = ['GetPluginInfo', 'GetPluginCapabilities', 'Probe'];
const NODE_PREFIX = 'Node';

function serviceOf(method: CsiMethod): CsiServiceName {
  if (IDENTITY.includes(method)) return 'Identity';
  return method.startsWith(NODE_PREFIX) ? 'Node' : 'Controller';
}

export class CsiClient {
  private readonly client: grpc.Client;

  constructor(readonly socketPath: string) {
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  call<M extends CsiMethod>(method: M, request: object = {}): Promise<CsiResponses[M]> {
    const { path, requestSerialize, responseDeserialize } = csiServiceDefinition(serviceOf(method))[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(path, requestSerialize, responseDeserialize, request, (error, response) =>
        error ? reject(error) : resolve(response as CsiResponses[M]),
      );
    });
  }

  /** The error a call fails with; throws if it succeeds. */
  async failure(method: CsiMethod, request: object = {}): Promise<grpc.ServiceError> {
    try {
      await this.call(method, request);
    } catch (error) {
      return error as grpc.ServiceError;
    }
    throw new Error(`${method} succeeded; a failure was expected`);
  }

  /** The status code name a call fails with ("NOT_FOUND", ...), or "OK" when it succeeds. */
  async code(method: CsiMethod, request: object = {}): Promise<string> {
    try {
      await this.call(method, request);
      return 'OK';
    } catch (error) {
      return grpc.status[(error as grpc.ServiceError).code];
    }
  }

  close(): void {
    this.client.close();
  }
}

/** Capabilities the way CSI requests carry them. */
export const MOUNT_WRITER = { mount: { fs_type: '', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
export const BLOCK_WRITER = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
