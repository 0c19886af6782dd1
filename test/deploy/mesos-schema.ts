// The protobuf messages of mesos.proto (and the URI disk profile adaptor's file) that deploy/mesos
// uses, as a schema for its JSON: field names and types, required fields, enums.

import type { Attribute, Model, ModelTable, Schema } from './schema';

/** fields: name -> type ("string", "number", "boolean", a message, "Array<...>", a map). */
function message(fields: Record<string, string>, required: string[] = [], exactlyOneOf?: string[]): Model {
  const attributes: Attribute[] = Object.entries(fields).map(([name, type]) => ({ name, type, format: '' }));
  return { attributes, required, ...(exactlyOneOf ? { exactlyOneOf } : {}) };
}

const MODELS: ModelTable = {
  ResourceProviderInfo: message(
    { id: 'ID', attributes: 'Array<any>', type: 'string', name: 'string', default_reservations: 'Array<ReservationInfo>', storage: 'Storage' },
    ['type', 'name'],
  ),
  Storage: message({ plugin: 'CSIPluginInfo', reconciliation_interval_seconds: 'number' }, ['plugin']),
  CSIPluginInfo: message(
    { type: 'string', name: 'string', containers: 'Array<CSIPluginContainerInfo>', endpoints: 'Array<any>', target_path_root: 'string', target_path_exists: 'boolean' },
    ['type'],
  ),
  CSIPluginContainerInfo: message({ services: 'Array<string>', command: 'CommandInfo', resources: 'Array<Resource>', container: 'ContainerInfo' }),
  CommandInfo: message({ uris: 'Array<URI>', environment: 'Environment', shell: 'boolean', value: 'string', arguments: 'Array<string>', user: 'string' }),
  URI: message({ value: 'string', executable: 'boolean', extract: 'boolean', cache: 'boolean', output_file: 'string' }, ['value']),
  Environment: message({ variables: 'Array<Variable>' }),
  Variable: message({ name: 'string', type: 'string', value: 'string', secret: 'any' }, ['name']),
  Resource: message(
    {
      provider_id: 'ID', name: 'string', type: 'string', scalar: 'Scalar', ranges: 'any', set: 'any',
      reservations: 'Array<ReservationInfo>', disk: 'DiskInfo', revocable: 'any', shared: 'any', allocation_info: 'any',
    },
    ['name', 'type'],
  ),
  Scalar: message({ value: 'number' }, ['value']),
  ReservationInfo: message({ type: 'string', role: 'string', principal: 'string', labels: 'any' }),
  DiskInfo: message({ persistence: 'Persistence', volume: 'Volume', source: 'Source' }),
  Persistence: message({ id: 'string', principal: 'string' }, ['id']),
  Source: message({ type: 'string', path: 'any', mount: 'Mount', id: 'string', metadata: 'any', profile: 'string', vendor: 'string' }, ['type']),
  Mount: message({ root: 'string' }),
  Volume: message({ mode: 'string', container_path: 'string', host_path: 'string', image: 'Image', source: 'any' }, ['mode', 'container_path']),
  ContainerInfo: message(
    { type: 'string', volumes: 'Array<Volume>', hostname: 'string', docker: 'any', mesos: 'MesosInfo', network_infos: 'Array<any>', linux_info: 'any' },
    ['type'],
  ),
  MesosInfo: message({ image: 'Image' }),
  Image: message({ type: 'string', appc: 'any', docker: 'DockerImage', cached: 'boolean' }, ['type']),
  DockerImage: message({ name: 'string', credential: 'any', config: 'any' }, ['name']),
  TaskInfo: message(
    {
      name: 'string', task_id: 'ID', agent_id: 'ID', resources: 'Array<Resource>', executor: 'any', command: 'CommandInfo',
      container: 'ContainerInfo', health_check: 'any', check: 'any', kill_policy: 'any', data: 'string', labels: 'any', discovery: 'any',
    },
    ['name', 'task_id', 'agent_id'],
  ),
  ID: message({ value: 'string' }, ['value']),
  // src/csi/uri_volume_profile.proto and the UriDiskProfileAdaptor docs.
  UriVolumeProfileMapping: message({ profile_matrix: '{ [key: string]: CSIManifest; }' }),
  CSIManifest: message(
    {
      resource_provider_selector: 'any', csi_plugin_type_selector: 'CSIPluginTypeSelector',
      volume_capabilities: 'VolumeCapability', create_parameters: '{ [key: string]: string; }',
    },
    ['volume_capabilities'],
    ['resource_provider_selector', 'csi_plugin_type_selector'],
  ),
  CSIPluginTypeSelector: message({ plugin_type: 'string' }, ['plugin_type']),
  VolumeCapability: message({ block: 'any', mount: 'MountVolume', access_mode: 'AccessMode' }, ['access_mode'], ['block', 'mount']),
  MountVolume: message({ fs_type: 'string', mount_flags: 'Array<string>' }),
  AccessMode: message({ mode: 'string' }, ['mode']),
};

const ENUMS: Record<string, readonly string[]> = {
  'CSIPluginContainerInfo.services': ['CONTROLLER_SERVICE', 'NODE_SERVICE'],
  'Variable.type': ['VALUE', 'SECRET'],
  'Resource.type': ['SCALAR', 'RANGES', 'SET', 'TEXT'],
  'ReservationInfo.type': ['STATIC', 'DYNAMIC'],
  'Source.type': ['PATH', 'MOUNT', 'BLOCK', 'RAW'],
  'Volume.mode': ['RW', 'RO'],
  'ContainerInfo.type': ['DOCKER', 'MESOS'],
  'Image.type': ['APPC', 'DOCKER'],
  'AccessMode.mode': [
    'SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER',
    'MULTI_NODE_MULTI_WRITER', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER',
  ],
};

export const MESOS_SCHEMA: Schema = { models: MODELS, enums: ENUMS };
