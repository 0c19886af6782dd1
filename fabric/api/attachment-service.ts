// AttachmentService: validates each request, then records, removes or lists attachments in the
// AttachmentStore. Only a volume that exists can be recorded as attached: one of this node's, or a
// replicated volume of the cluster (attach is local on every node, with or without a copy here).
// Claims: a volume of the cluster is attached on one node at a time (attach-claims.ts).

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { AttachmentStore } from './attachments';
import type { ReplicatedVolumes } from './cluster-volumes';
import type * as wire from './messages';
import { unary, type RpcContext } from './rpc';
import { checkName, checkOptionalName } from './validate';

/** Claims on volumes of the cluster for this node's attachments (AttachClaims). */
export interface VolumeClaims {
  claim(volume: string, keepTrying: boolean): Promise<void>;
  release(volume: string): Promise<void>;
  wants(volume: string): boolean;
}

export function attachmentService(store: AttachmentStore, volumes: ReplicatedVolumes, claims: VolumeClaims | undefined, rpc: RpcContext): UntypedServiceImplementation {
  return {
    ClaimVolume: unary(rpc, async (request: wire.ClaimVolumeRequest) => {
      const volume = checkName('volume', request.volume);
      volumes.info(volume);
      if (claims && volumes.claimed(volume)) await claims.claim(volume, request.keepTrying ?? false);
      return {};
    }),
    // A volume of this node alone, never claimed, asks nothing of the store (which may be out of reach).
    ReleaseVolume: unary(rpc, async (request: wire.ClaimVolumeRequest) => {
      const volume = checkName('volume', request.volume);
      if (claims && (claims.wants(volume) || volumes.claimed(volume))) await claims.release(volume);
      return {};
    }),
    RecordAttachment: unary(rpc, (request: wire.AttachmentRequest) => {
      const volume = checkName('volume', request.volume);
      const nodeId = checkName('node_id', request.nodeId);
      volumes.info(volume);
      const { devicePath, method, stagingPath, workloads } = request;
      return store.record({ volume, nodeId, devicePath, method, stagingPath, workloads });
    }),
    RemoveAttachment: unary(rpc, (request: wire.RemoveAttachmentRequest) => {
      store.remove(checkName('volume', request.volume), checkName('node_id', request.nodeId));
      return {};
    }),
    // Asked about one volume that has no attachment here: NOT_FOUND if no such volume exists (a typo),
    // rather than an empty list that reads as "not attached".
    ListAttachments: unary(rpc, (request: wire.ListAttachmentsRequest) => {
      const volume = checkOptionalName('volume', request.volume);
      const attachments = store.list({ volume, nodeId: checkOptionalName('node_id', request.nodeId) });
      if (volume !== undefined && attachments.length === 0) volumes.info(volume);
      return { attachments };
    }),
  };
}
