// Mesos' side of the CSI plugin: the type names deploy/mesos registers weftd under, the environment
// Mesos gives plugin containers, and the protobuf JSON shapes (mesos.proto) of the files there.

/** ResourceProviderInfo.type of Mesos' storage local resource provider (SLRP). */
export const RESOURCE_PROVIDER_TYPE = 'org.apache.mesos.rp.local.storage';
/** CSIPluginInfo.type; disk profiles select the plugin by it. */
export const PLUGIN_TYPE = 'org.apache.mesos.csi.weft';
/** Mesos sets it to "unix://<socket path>" for every plugin container (src/csi/service_manager.cpp). */
export const CSI_ENDPOINT_ENV = 'CSI_ENDPOINT';

export type CsiService = 'CONTROLLER_SERVICE' | 'NODE_SERVICE';

export interface CommandInfo {
  /** Default true: value runs under /bin/sh -c, so $CSI_ENDPOINT expands. */
  shell?: boolean;
  value?: string;
  arguments?: string[];
  environment?: { variables: { name: string; value?: string }[] };
}

export interface ScalarResource {
  name: string;
  type: 'SCALAR';
  scalar: { value: number };
}

export interface VolumeInfo {
  container_path: string;
  host_path?: string;
  mode: 'RW' | 'RO';
}

export interface ContainerInfo {
  type: 'MESOS' | 'DOCKER';
  mesos?: { image?: { type: 'DOCKER'; docker: { name: string } } };
  volumes?: VolumeInfo[];
}

export interface CsiPluginContainerInfo {
  services: CsiService[];
  command?: CommandInfo;
  resources?: ScalarResource[];
  container?: ContainerInfo;
}

export interface CsiPluginInfo {
  type: string;
  name: string;
  containers: CsiPluginContainerInfo[];
}

export interface ResourceProviderInfo {
  type: string;
  name: string;
  default_reservations?: { type: 'STATIC' | 'DYNAMIC'; role: string }[];
  storage: { plugin: CsiPluginInfo };
}

/** The UriDiskProfileAdaptor's file: a profile name -> how volumes of that profile are made. */
export interface DiskProfiles {
  profile_matrix: Record<
    string,
    {
      csi_plugin_type_selector: { plugin_type: string };
      volume_capabilities: { mount?: { fs_type?: string; mount_flags?: string[] }; block?: object; access_mode: { mode: string } };
      create_parameters?: Record<string, string>;
    }
  >;
}
