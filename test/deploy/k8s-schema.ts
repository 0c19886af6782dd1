// Validates Kubernetes objects against the typed models of @kubernetes/client-node (every field known,
// of its declared type, required ones present), plus the enums and CRDs those models do not carry.

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { checkValue, type Attribute, type ModelTable } from './schema';

/** The models of @kubernetes/client-node, read by a plain node process (the package is ESM-only, jest's loader is not). */
export function clientNodeModels(): ModelTable {
  const dump = path.join(__dirname, 'k8s-model-dump.js');
  return JSON.parse(execFileSync(process.execPath, [dump], { encoding: 'utf8', maxBuffer: 64 << 20 })) as ModelTable;
}

const stringField = (name: string): Attribute => ({ name, type: 'string', format: '' });
const objectHeader = [stringField('apiVersion'), stringField('kind'), { name: 'metadata', type: 'V1ObjectMeta', format: '' }];

/**
 * VolumeSnapshotClass and VolumeSnapshot (snapshot.storage.k8s.io/v1) as external-snapshotter's CRDs
 * define them (client/config/crd): client-node has no models for CRDs.
 */
export const SNAPSHOT_MODELS: ModelTable = {
  V1VolumeSnapshotClass: {
    attributes: [...objectHeader, stringField('driver'), stringField('deletionPolicy'), { name: 'parameters', type: '{ [key: string]: string; }', format: '' }],
    required: ['driver', 'deletionPolicy'],
  },
  V1VolumeSnapshot: {
    attributes: [...objectHeader, { name: 'spec', type: 'V1VolumeSnapshotSpec', format: '' }, { name: 'status', type: 'any', format: '' }],
    required: ['spec'],
  },
  V1VolumeSnapshotSpec: {
    attributes: [{ name: 'source', type: 'V1VolumeSnapshotSource', format: '' }, stringField('volumeSnapshotClassName')],
    required: ['source'],
  },
  V1VolumeSnapshotSource: {
    attributes: [stringField('persistentVolumeClaimName'), stringField('volumeSnapshotContentName')],
    required: [],
    exactlyOneOf: ['persistentVolumeClaimName', 'volumeSnapshotContentName'],
  },
};

/**
 * ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) as the Prometheus Operator's CRDs
 * define the fields the manifests use (its API reference): client-node has no models for CRDs.
 */
export const MONITORING_MODELS: ModelTable = {
  V1ServiceMonitor: { attributes: [...objectHeader, { name: 'spec', type: 'V1ServiceMonitorSpec', format: '' }], required: ['spec'] },
  V1ServiceMonitorSpec: {
    attributes: [stringField('jobLabel'), { name: 'selector', type: 'V1LabelSelector', format: '' }, { name: 'endpoints', type: 'Array<V1ServiceMonitorEndpoint>', format: '' }],
    required: ['selector', 'endpoints'],
  },
  V1ServiceMonitorEndpoint: {
    attributes: [stringField('port'), stringField('path'), stringField('interval'), stringField('scheme'), { name: 'honorLabels', type: 'boolean', format: '' }, { name: 'relabelings', type: 'Array<V1RelabelConfig>', format: '' }],
    required: ['port'],
  },
  V1RelabelConfig: {
    attributes: [
      { name: 'sourceLabels', type: 'Array<string>', format: '' }, stringField('separator'), stringField('targetLabel'), stringField('regex'),
      stringField('replacement'), stringField('action'),
    ],
    required: [],
  },
  V1PrometheusRule: { attributes: [...objectHeader, { name: 'spec', type: 'V1PrometheusRuleSpec', format: '' }], required: ['spec'] },
  V1PrometheusRuleSpec: { attributes: [{ name: 'groups', type: 'Array<V1RuleGroup>', format: '' }], required: ['groups'] },
  V1RuleGroup: { attributes: [stringField('name'), stringField('interval'), { name: 'rules', type: 'Array<V1Rule>', format: '' }], required: ['name', 'rules'] },
  V1Rule: {
    attributes: [
      stringField('record'), stringField('alert'), stringField('expr'), stringField('for'),
      { name: 'labels', type: '{ [key: string]: string; }', format: '' }, { name: 'annotations', type: '{ [key: string]: string; }', format: '' },
    ],
    required: ['expr'],
    exactlyOneOf: ['record', 'alert'],
  },
};

/** Allowed values of the enum fields the manifests use ("Model.field"), from the Kubernetes API reference and the CRDs. */
export const ENUMS: Record<string, readonly string[]> = {
  'V1CSIDriverSpec.fsGroupPolicy': ['None', 'File', 'ReadWriteOnceWithFSType'],
  'V1CSIDriverSpec.volumeLifecycleModes': ['Persistent', 'Ephemeral'],
  'V1StorageClass.volumeBindingMode': ['Immediate', 'WaitForFirstConsumer'],
  'V1StorageClass.reclaimPolicy': ['Delete', 'Retain'],
  'V1VolumeMount.mountPropagation': ['None', 'HostToContainer', 'Bidirectional'],
  'V1HostPathVolumeSource.type': ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'],
  'V1PersistentVolumeClaimSpec.accessModes': ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'],
  'V1PersistentVolumeClaimSpec.volumeMode': ['Filesystem', 'Block'],
  'V1DaemonSetUpdateStrategy.type': ['RollingUpdate', 'OnDelete'],
  'V1DeploymentStrategy.type': ['RollingUpdate', 'Recreate'],
  'V1PodSpec.dnsPolicy': ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'],
  'V1PodSpec.restartPolicy': ['Always', 'OnFailure', 'Never'],
  'V1Container.imagePullPolicy': ['Always', 'IfNotPresent', 'Never'],
  'V1ObjectFieldSelector.fieldPath': [
    'metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName',
    'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs',
  ],
  'V1VolumeSnapshotClass.deletionPolicy': ['Delete', 'Retain'],
  'V1RelabelConfig.action': ['replace', 'keep', 'drop', 'hashmod', 'labelmap', 'labeldrop', 'labelkeep', 'lowercase', 'uppercase', 'keepequal', 'dropequal'],
};

/** The API group of each kind the manifests use ("" is core): model names carry only version and kind. */
export const KIND_GROUPS: Record<string, string> = {
  Namespace: '', ServiceAccount: '', Service: '', Pod: '', PersistentVolumeClaim: '',
  DaemonSet: 'apps', Deployment: 'apps', StatefulSet: 'apps', PodDisruptionBudget: 'policy',
  ClusterRole: 'rbac.authorization.k8s.io', ClusterRoleBinding: 'rbac.authorization.k8s.io',
  Role: 'rbac.authorization.k8s.io', RoleBinding: 'rbac.authorization.k8s.io',
  CSIDriver: 'storage.k8s.io', StorageClass: 'storage.k8s.io',
  VolumeSnapshotClass: 'snapshot.storage.k8s.io', VolumeSnapshot: 'snapshot.storage.k8s.io',
  ServiceMonitor: 'monitoring.coreos.com', PrometheusRule: 'monitoring.coreos.com',
};

/** "storage.k8s.io/v1" + "CSIDriver" -> "V1CSIDriver", the generator's model name. */
export function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop() ?? '';
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
}

/** Every problem with a top-level object, as "path: problem" lines; empty when it is valid. */
export function validateObject(models: ModelTable, object: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const { apiVersion, kind } = object;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind are required strings'];
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  if (!(kind in KIND_GROUPS)) return [`kind ${kind} is not one the tests know (KIND_GROUPS)`];
  if (KIND_GROUPS[kind] !== group) return [`apiVersion ${apiVersion}: ${kind} is in API group "${KIND_GROUPS[kind]}", not "${group}"`];
  const name = modelName(apiVersion, kind);
  if (!models[name]) return [`no model ${name} for ${apiVersion} ${kind}`];
  const metadata = object.metadata as { name?: unknown } | undefined;
  if (typeof metadata?.name !== 'string' || metadata.name === '') errors.push('metadata.name: required');
  checkValue({ models, enums: ENUMS }, object, name, '', kind, errors);
  return errors;
}

