// How a Weft volume is described to Nomad: the volume specification `weft nomad volume create` and
// `register` send, with the weft plugin and the CSI volume id as the external id.

import type { VolumeInfo } from '../../fabric/volume/types';
import { nodeSegments, type Place } from '../csi/topology';
import type { AccessMode, AttachmentMode, CsiVolumeSpec } from './types';

/** The csi_plugin id of the jobs in deploy/nomad. */
export const NOMAD_PLUGIN_ID = 'weft';

export interface RegistrationOptions {
  /** Nomad's id of the volume (what jobs name in volume.source); default: the Weft volume's name. */
  id?: string;
  accessMode: AccessMode;
  attachmentMode: AttachmentMode;
  /** For file-system attachment; the node formats a blank volume with it. */
  fsType?: string;
}

/**
 * The register request for an existing Weft volume. Its CSI volume id is its name (adapters/csi/names.ts).
 * heldOn: the node a volume outside the cluster (no replication) is on, the only node that can attach
 * it: its topology then requires that node's segments, all of them as the node plugin reports them
 * (Nomad before 1.8 matches only equal ones), so that Nomad places the jobs that claim it there. A
 * volume of the cluster is attached through any node: no topology.
 */
export function registrationFor(volume: VolumeInfo, options: RegistrationOptions, heldOn?: Place): CsiVolumeSpec {
  const id = options.id ?? volume.name;
  const fileSystem = options.attachmentMode === 'file-system';
  return {
    ID: id,
    Name: id,
    ExternalID: volume.name,
    PluginID: NOMAD_PLUGIN_ID,
    RequestedCapabilities: [{ AccessMode: options.accessMode, AttachmentMode: options.attachmentMode }],
    ...(fileSystem && options.fsType ? { MountOptions: { FsType: options.fsType } } : {}),
    ...(volume.replication === undefined && heldOn !== undefined ? { RequestedTopologies: { Required: [{ Segments: nodeSegments(heldOn) }] } } : {}),
  };
}
