// The JSON shapes of Nomad's CSI volume and plugin endpoints (/v1/volumes, /v1/volume/csi/:id,
// /v1/plugins) and of an allocation (/v1/allocation/:id), field names as Nomad's HTTP API writes them.

export const ACCESS_MODES = [
  'single-node-reader-only', 'single-node-writer', 'multi-node-reader-only', 'multi-node-single-writer', 'multi-node-multi-writer',
] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export const ATTACHMENT_MODES = ['file-system', 'block-device'] as const;
export type AttachmentMode = (typeof ATTACHMENT_MODES)[number];

export interface CsiCapability {
  AccessMode: AccessMode;
  AttachmentMode: AttachmentMode;
}

export interface CsiMountOptions {
  FsType?: string;
  MountFlags?: string[];
}

/** What register and create send, one per volume, in {"Volumes": [...]}. */
/** A place as CSI topology segments (Weft's: topology.weft.io/node, topology.weft.io/zone). */
export interface CsiTopology {
  Segments: Record<string, string>;
}

export interface CsiVolumeSpec {
  ID: string;
  Name: string;
  Namespace?: string;
  /** The storage provider's id of the volume (the CSI volume id); register only, create gets it from the plugin. */
  ExternalID?: string;
  PluginID: string;
  RequestedCapabilities: CsiCapability[];
  RequestedCapacityMin?: number;
  RequestedCapacityMax?: number;
  MountOptions?: CsiMountOptions;
  /** Passed to CreateVolume (create). */
  Parameters?: Record<string, string>;
  /** Where the volume can be used: on register, Nomad takes Required as the volume's Topologies, which its scheduler checks against each client's plugin. */
  RequestedTopologies?: { Required?: CsiTopology[]; Preferred?: CsiTopology[] };
  /** Passed to the node as volume_context (register). */
  Context?: Record<string, string>;
  SnapshotID?: string;
  CloneID?: string;
}

/** What Nomad reports of a plugin (provider, health, Raft indexes), on the plugin and on each of its volumes. */
interface PluginHealth {
  Provider: string;
  ControllerRequired: boolean;
  ControllersHealthy: number;
  ControllersExpected: number;
  NodesHealthy: number;
  NodesExpected: number;
  CreateIndex: number;
  ModifyIndex: number;
}

/** Fields GET /v1/volumes?type=csi and GET /v1/volume/csi/:id both report. */
interface CsiVolumeStatus extends PluginHealth {
  ID: string;
  Namespace: string;
  Name: string;
  ExternalID: string;
  Topologies: (CsiTopology | null)[] | null;
  /** The mode of its current claims; "" while it has none. */
  AccessMode: AccessMode | '';
  AttachmentMode: AttachmentMode | '';
  Schedulable: boolean;
  PluginID: string;
}

export type CsiVolumeStub = CsiVolumeStatus;

export interface CsiVolume extends CsiVolumeStatus {
  RequestedCapabilities: CsiCapability[] | null;
  /** Bytes, as the plugin reported at creation; 0 for a registered volume. */
  Capacity: number;
  RequestedCapacityMin: number;
  RequestedCapacityMax: number;
  Parameters: Record<string, string> | null;
  Context: Record<string, string> | null;
  ProviderVersion: string;
  Allocations: { ID: string }[] | null;
}

export interface CsiPluginStub extends PluginHealth {
  ID: string;
}

/** What GET /v1/allocation/:id answers, the fields Weft reads (Nomad sends many more: Job, Resources, TaskStates...). */
export interface Allocation {
  ID: string;
  Namespace: string;
  /** "JOB.GROUP[INDEX]". */
  Name: string;
  NodeID: string;
  JobID: string;
  TaskGroup: string;
  ClientStatus: string;
}
