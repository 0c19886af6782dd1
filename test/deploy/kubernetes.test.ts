// deploy/kubernetes: every manifest is valid against the Kubernetes object schemas (client-node's
// models, the snapshot CRDs), and agrees with the driver: names, sockets, paths, weftd flags, RBAC.

import {
  CONTAINER_CSI_ENDPOINT, CONTAINER_SOCKET_DIR, CSI_DRIVER_NAME, DATA_DIR, IMAGE, KUBELET_DIR, NAMESPACE, NODE_ZONE_LABEL, PLUGIN_DIR,
  REGISTRATION_PATH, REGISTRY_DIR, SIDECAR_IMAGES, TOPOLOGY_NODE_KEY, TOPOLOGY_ZONE_KEY,
} from '../../adapters/kubernetes/values';
import path from 'node:path';
import { parseParameters } from '../../adapters/csi/parameters';
import { ruleGroups } from '../../exporters/prometheus/prometheus-rule';
import {
  container, expandedArgs, find, loadManifests, podSpec, volumeAt, type Container, type K8sObject, type ManifestFile, type PodSpec,
} from './k8s-manifests';
import { dockerfileFacts } from './dockerfile';
import { clientNodeModels, MONITORING_MODELS, SNAPSHOT_MODELS, validateObject } from './k8s-schema';
import type { ModelTable } from './schema';
import { flagValue, parseWeftdArgs, socketPath } from './weftd-args';

let models: ModelTable;
let files: ManifestFile[];
let objects: K8sObject[];

beforeAll(() => {
  models = { ...clientNodeModels(), ...SNAPSHOT_MODELS, ...MONITORING_MODELS };
  files = loadManifests();
  objects = files.flatMap((file) => file.objects);
});

describe('the schema check', () => {
  const pod = (container: Record<string, unknown>) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', ...container }] },
  });

  it('accepts a valid object', () => {
    expect(validateObject(models, pod({ volumeMounts: [{ name: 'v', mountPath: '/v', mountPropagation: 'Bidirectional' }] }))).toEqual([]);
  });

  it.each([
    ['a misspelled field', pod({ volumeMounts: [{ name: 'v', mountPath: '/v', mountPropogation: 'Bidirectional' }] }), /mountPropogation: unknown field of V1VolumeMount/],
    ['a wrong type', pod({ securityContext: { privileged: 'true' } }), /privileged: expected true or false/],
    ['a string where a list goes', pod({ args: '--csi-role node' }), /args: expected a list of string/],
    ['a missing required field', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ image: 'i' }] } }, /containers\[0\]\.name: required by V1Container/],
    ['a value outside an enum', pod({ volumeMounts: [{ name: 'v', mountPath: '/v', mountPropagation: 'Shared' }] }), /"Shared" is not one of/],
    ['a fractional integer', pod({ ports: [{ containerPort: 10809.5 }] }), /containerPort: expected an integer/],
    ['a kind in the wrong API group', { apiVersion: 'v1', kind: 'Deployment', metadata: { name: 'd' } }, /Deployment is in API group "apps", not ""/],
    ['an API version that does not exist', { apiVersion: 'storage.k8s.io/v2', kind: 'CSIDriver', metadata: { name: 'd' } }, /no model V2CSIDriver/],
    ['a nameless object', { apiVersion: 'v1', kind: 'Namespace', metadata: {} }, /metadata\.name: required/],
  ])('rejects %s', (_, object, message) => {
    expect(validateObject(models, object as Record<string, unknown>).join('\n')).toMatch(message);
  });

  it('checks the snapshot CRDs: required fields, deletionPolicy, exactly one source', () => {
    const snapshotClass = { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name: 'c' }, driver: 'd', deletionPolicy: 'Keep' };
    expect(validateObject(models, snapshotClass).join('\n')).toMatch(/deletionPolicy: "Keep" is not one of Delete, Retain/);
    const snapshot = { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 's' }, spec: { source: {} } };
    expect(validateObject(models, snapshot).join('\n')).toMatch(/exactly one of persistentVolumeClaimName, volumeSnapshotContentName/);
  });
});

describe('every manifest', () => {
  it('parses, and each document is a valid Kubernetes object', () => {
    expect(files.length).toBeGreaterThanOrEqual(11);
    const problems = files.flatMap(({ file, objects: documents }) =>
      documents.flatMap((object) => validateObject(models, object).map((error) => `${file} ${object.kind}/${object.metadata?.name}: ${error}`)),
    );
    expect(problems).toEqual([]);
  });

  it('kubectl apply -f deploy/kubernetes/ (its top level) needs no Prometheus Operator: its kinds are under monitoring/', () => {
    const topLevel = files.filter(({ file }) => !file.includes('/'));
    const operatorKinds = topLevel.flatMap(({ file, objects: documents }) => documents.filter((object) => object.apiVersion.startsWith('monitoring.coreos.com/')).map((object) => `${file} ${object.kind}`));
    expect(operatorKinds).toEqual([]);
    const monitoring = files.filter(({ file }) => file.startsWith('monitoring/')).flatMap(({ objects: documents }) => documents.map((object) => object.kind));
    expect(monitoring.sort()).toEqual(['PrometheusRule', 'Service', 'ServiceMonitor']);
  });

  it('puts Weft objects in the weft-system namespace, which it creates', () => {
    find(objects, 'Namespace', NAMESPACE);
    const weftObjects = objects.filter((object) => object.metadata.labels?.['app.kubernetes.io/name'] === 'weft');
    const namespaced = ['ServiceAccount', 'Role', 'RoleBinding', 'DaemonSet', 'Deployment'];
    for (const object of weftObjects.filter((candidate) => namespaced.includes(candidate.kind))) {
      expect(`${object.kind}/${object.metadata.name} in ${object.metadata.namespace}`).toBe(`${object.kind}/${object.metadata.name} in ${NAMESPACE}`);
    }
  });
});

describe('driver objects', () => {
  it('CSIDriver names the driver, needs no attach step and asks for pod info', () => {
    const driver = find(objects, 'CSIDriver', CSI_DRIVER_NAME);
    expect(driver.spec).toEqual({ attachRequired: false, podInfoOnMount: true, volumeLifecycleModes: ['Persistent'], fsGroupPolicy: 'File', storageCapacity: true });
  });

  it('has a StorageClass per service class, for this driver, with parameters CreateVolume accepts', () => {
    const classes = objects.filter((object) => object.kind === 'StorageClass');
    expect(classes.map((object) => object.metadata.name).sort()).toEqual(['weft-default', 'weft-hdd', 'weft-ssd']);
    for (const storageClass of classes) {
      const parameters = storageClass.parameters as Record<string, string>;
      expect(storageClass).toMatchObject({ provisioner: CSI_DRIVER_NAME, allowVolumeExpansion: true, volumeBindingMode: 'WaitForFirstConsumer' });
      const parsed = parseParameters(parameters);
      expect(`weft-${parsed.class}`).toBe(storageClass.metadata.name);
      expect(parsed.locality).toBe(true);
    }
  });

  it('waits for the pod\'s node, whose topology segments the node plugin reports under weft\'s keys', () => {
    expect([TOPOLOGY_NODE_KEY, TOPOLOGY_ZONE_KEY]).toEqual(['topology.weft.io/node', 'topology.weft.io/zone']);
    const modes = objects.filter((object) => object.kind === 'StorageClass').map((object) => object.volumeBindingMode);
    expect(new Set(modes)).toEqual(new Set(['WaitForFirstConsumer']));
  });

  it('has a VolumeSnapshotClass for this driver', () => {
    expect(find(objects, 'VolumeSnapshotClass', 'weft-snapshots')).toMatchObject({ driver: CSI_DRIVER_NAME, deletionPolicy: 'Delete' });
  });
});

/** weftd's args (env expanded) must parse as weftd parses them, serve CSI on the socket dir, in the role given. */
function checkWeftd(pod: PodSpec, role: string): Container {
  const weftd = container(pod, 'weftd');
  expect(weftd.image).toBe(IMAGE);
  expect(IMAGE).toBe(dockerfileFacts().tag);
  // PID 1 reaps the kernel-NBD relays, which leave weftd's children when they go to the background.
  expect(dockerfileFacts().init).toBe('/usr/bin/tini');
  const args = expandedArgs(weftd);
  expect(parseWeftdArgs(args).dataDir).toBe(DATA_DIR);
  expect(flagValue(args, '--csi-endpoint')).toBe(CONTAINER_CSI_ENDPOINT);
  expect(flagValue(args, '--csi-role')).toBe(role);
  expect(volumeAt(pod, weftd, DATA_DIR)).toBeDefined();
  return weftd;
}

/** Every CSI sidecar talks to weftd's socket through the same volume. */
function checkSidecarSockets(pod: PodSpec, names: string[]): void {
  const weftd = container(pod, 'weftd');
  const socketVolume = volumeAt(pod, weftd, CONTAINER_SOCKET_DIR);
  for (const name of names) {
    const sidecar = container(pod, name);
    expect(`${name}: ${flagValue(sidecar.args ?? [], '--csi-address')}`).toBe(`${name}: ${socketPath(CONTAINER_CSI_ENDPOINT)}`);
    expect(volumeAt(pod, sidecar, CONTAINER_SOCKET_DIR).name).toBe(socketVolume.name);
  }
}

/** weftd's liveness probe hits the port the livenessprobe sidecar serves /healthz on. */
function checkLiveness(pod: PodSpec): void {
  const weftd = container(pod, 'weftd');
  const probe = weftd.livenessProbe?.httpGet;
  expect(probe?.path).toBe('/healthz');
  // Not while weftd starts (journal replay, joining etcd): the startup probe, on the same endpoint, allows minutes.
  const startup = weftd.startupProbe;
  expect(startup?.httpGet).toEqual(weftd.livenessProbe?.httpGet);
  expect((startup?.periodSeconds ?? 10) * (startup?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(300);
  const port = typeof probe?.port === 'number' ? probe.port : weftd.ports?.find((candidate) => candidate.name === probe?.port)?.containerPort;
  expect(flagValue(container(pod, 'liveness-probe').args ?? [], '--health-port')).toBe(String(port));
  expect(container(pod, 'liveness-probe').image).toBe(SIDECAR_IMAGES.livenessProbe);
}

describe('the etcd StatefulSet', () => {
  const etcdArgs = () => expandedArgs(container(podSpec(find(objects, 'StatefulSet', 'weft-etcd')), 'etcd'));

  it('compacts its history, and its quota leaves room in its claim (else etcd refuses every write once full)', () => {
    const args = etcdArgs();
    expect(flagValue(args, '--auto-compaction-mode')).toBe('periodic');
    expect(flagValue(args, '--auto-compaction-retention')).toMatch(/^\d+[hm]$/);
    const claim = (find(objects, 'StatefulSet', 'weft-etcd').spec as { volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[] }).volumeClaimTemplates[0];
    const quota = Number(flagValue(args, '--quota-backend-bytes'));
    expect(quota).toBeGreaterThan(0);
    expect(quota).toBeLessThanOrEqual(parseQuantity(claim.spec.resources.requests.storage) / 2);
  });

  it('has a PodDisruptionBudget that lets a drain evict one member at a time', () => {
    const budget = find(objects, 'PodDisruptionBudget', 'weft-etcd').spec as { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
    expect(budget.maxUnavailable).toBe(1);
    const labels = (find(objects, 'StatefulSet', 'weft-etcd').spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    expect(labels).toMatchObject(budget.selector.matchLabels);
  });
});

describe('the node DaemonSet', () => {
  let pod: PodSpec;
  beforeAll(() => (pod = podSpec(find(objects, 'DaemonSet', 'weft-node'))));

  it('runs weftd as the node plugin: privileged, on the host network, with the CSI socket in the plugin dir', () => {
    const weftd = checkWeftd(pod, 'node');
    expect(pod.hostNetwork).toBe(true);
    expect(weftd.securityContext?.privileged).toBe(true);
    expect(volumeAt(pod, weftd, CONTAINER_SOCKET_DIR).hostPath?.path).toBe(PLUGIN_DIR);
    expect(volumeAt(pod, weftd, DATA_DIR).hostPath?.path).toBe(DATA_DIR);
    expect(volumeAt(pod, weftd, '/dev').hostPath?.path).toBe('/dev');
  });

  it('mounts kubelet\'s dir with Bidirectional propagation, where NodeStage/NodePublish targets are', () => {
    const weftd = container(pod, 'weftd');
    const mount = weftd.volumeMounts?.find((candidate) => candidate.mountPath === KUBELET_DIR);
    expect(mount?.mountPropagation).toBe('Bidirectional');
    expect(volumeAt(pod, weftd, KUBELET_DIR).hostPath?.path).toBe(KUBELET_DIR);
  });

  it('registers the socket with kubelet at the path where the plugin dir puts it on the host', () => {
    const registrar = container(pod, 'node-driver-registrar');
    expect(registrar.image).toBe(SIDECAR_IMAGES.registrar);
    checkSidecarSockets(pod, ['node-driver-registrar', 'liveness-probe']);
    const registrationPath = flagValue(registrar.args ?? [], '--kubelet-registration-path');
    expect(registrationPath).toBe(REGISTRATION_PATH);
    const socketDir = volumeAt(pod, registrar, CONTAINER_SOCKET_DIR).hostPath?.path;
    expect(registrationPath).toBe(`${socketDir}${socketPath(CONTAINER_CSI_ENDPOINT).slice(CONTAINER_SOCKET_DIR.length)}`);
    expect(volumeAt(pod, registrar, '/registration').hostPath?.path).toBe(REGISTRY_DIR);
  });

  it('restarts weftd when the CSI Probe fails', () => checkLiveness(pod));

  it('is updated node by node by hand (OnDelete): a rolling update would end the attachments of every node in turn', () => {
    expect((find(objects, 'DaemonSet', 'weft-node').spec as { updateStrategy?: { type?: string } }).updateStrategy?.type).toBe('OnDelete');
  });

  it('takes each node\'s zone from its well-known zone label, reading the Node named by spec.nodeName', () => {
    const weftd = container(pod, 'weftd');
    const config = parseWeftdArgs(expandedArgs(weftd));
    expect(config.zoneFromNodeLabel).toBe(NODE_ZONE_LABEL);
    expect(NODE_ZONE_LABEL).toBe('topology.kubernetes.io/zone');
    expect(flagValue(weftd.args ?? [], '--node-id')).toBe('$(NODE_NAME)');
    expect(weftd.env?.find((variable) => variable.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
  });
});

describe('the controller Deployment', () => {
  let pod: PodSpec;
  beforeAll(() => (pod = podSpec(find(objects, 'Deployment', 'weft-controller'))));

  it('runs weftd as the controller plugin, with the sidecars on its socket', () => {
    checkWeftd(pod, 'controller');
    checkSidecarSockets(pod, ['csi-provisioner', 'csi-snapshotter', 'csi-resizer', 'csi-external-health-monitor-controller', 'liveness-probe']);
    expect(container(pod, 'csi-provisioner').image).toBe(SIDECAR_IMAGES.provisioner);
    expect(container(pod, 'csi-external-health-monitor-controller').image).toBe(SIDECAR_IMAGES.healthMonitor);
    // The controller lists volumes (LIST_VOLUMES): the monitor polls ListVolumes at this interval.
    expect(container(pod, 'csi-external-health-monitor-controller').args).toContain('--list-volumes-interval=1m');
    expect(container(pod, 'csi-snapshotter').image).toBe(SIDECAR_IMAGES.snapshotter);
    expect(container(pod, 'csi-resizer').image).toBe(SIDECAR_IMAGES.resizer);
  });

  it('provisions with topology and passes PVC/PV names to CreateVolume', () => {
    const args = container(pod, 'csi-provisioner').args ?? [];
    expect(args).toEqual(expect.arrayContaining(['--feature-gates=Topology=true', '--extra-create-metadata']));
  });

  it('publishes capacity per node for the scheduler (the CSIDriver has storageCapacity), owned by the Deployment', () => {
    const provisioner = container(pod, 'csi-provisioner');
    expect(provisioner.args).toEqual(expect.arrayContaining(['--enable-capacity', '--capacity-ownerref-level=2']));
    const fields = Object.fromEntries((provisioner.env ?? []).map((variable) => [variable.name, variable.valueFrom?.fieldRef?.fieldPath]));
    expect(fields).toEqual({ NAMESPACE: 'metadata.namespace', POD_NAME: 'metadata.name' });
  });

  it('restarts weftd when the CSI Probe fails', () => checkLiveness(pod));
});

type Permission = [apiGroup: string, resource: string, verbs: string[]];

/** What each sidecar's deploy/kubernetes/rbac.yaml upstream grants (external-provisioner v4, -snapshotter v7, -resizer v1.10, -health-monitor v0.11). */
const SIDECAR_PERMISSIONS: Record<string, Permission[]> = {
  'csi-provisioner': [
    ['', 'persistentvolumes', ['get', 'list', 'watch', 'create', 'patch', 'delete']],
    ['', 'persistentvolumeclaims', ['get', 'list', 'watch', 'update']],
    ['storage.k8s.io', 'storageclasses', ['get', 'list', 'watch']],
    ['', 'events', ['list', 'watch', 'create', 'update', 'patch']],
    ['snapshot.storage.k8s.io', 'volumesnapshots', ['get', 'list']],
    ['snapshot.storage.k8s.io', 'volumesnapshotcontents', ['get', 'list']],
    ['storage.k8s.io', 'csinodes', ['get', 'list', 'watch']],
    ['', 'nodes', ['get', 'list', 'watch']],
  ],
  'csi-snapshotter': [
    ['', 'events', ['list', 'watch', 'create', 'update', 'patch']],
    ['snapshot.storage.k8s.io', 'volumesnapshotclasses', ['get', 'list', 'watch']],
    ['snapshot.storage.k8s.io', 'volumesnapshotcontents', ['create', 'get', 'list', 'watch', 'update', 'delete', 'patch']],
    ['snapshot.storage.k8s.io', 'volumesnapshotcontents/status', ['update', 'patch']],
  ],
  'csi-resizer': [
    ['', 'persistentvolumes', ['get', 'list', 'watch', 'patch']],
    ['', 'persistentvolumeclaims', ['get', 'list', 'watch']],
    ['', 'pods', ['get', 'list', 'watch']],
    ['', 'persistentvolumeclaims/status', ['patch']],
    ['', 'events', ['list', 'watch', 'create', 'update', 'patch']],
  ],
  'csi-external-health-monitor-controller': [
    ['', 'persistentvolumes', ['get', 'list', 'watch']],
    ['', 'persistentvolumeclaims', ['get', 'list', 'watch']],
    ['', 'pods', ['get', 'list', 'watch']],
    ['', 'nodes', ['get', 'list', 'watch']],
    ['', 'events', ['get', 'list', 'watch', 'create', 'patch']],
  ],
};
const LEADER_ELECTION: Permission = ['coordination.k8s.io', 'leases', ['get', 'watch', 'list', 'delete', 'update', 'create']];
/** What csi-provisioner --enable-capacity needs in its namespace (upstream's rbac.yaml, its Role). */
const CAPACITY: Permission[] = [
  ['storage.k8s.io', 'csistoragecapacities', ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']],
  ['', 'pods', ['get']],
  ['apps', 'replicasets', ['get']],
];

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
}
interface Binding {
  subjects?: { kind: string; name: string; namespace?: string }[];
  roleRef: { kind: string; name: string };
}

/** The rules bound to a service account by bindings of the given kind. */
function boundRules(account: string, bindingKind: 'ClusterRoleBinding' | 'RoleBinding'): Rule[] {
  const bindings = objects.filter((object) => object.kind === bindingKind) as unknown as (K8sObject & Binding)[];
  const mine = bindings.filter((binding) =>
    binding.subjects?.some((subject) => subject.kind === 'ServiceAccount' && subject.name === account && subject.namespace === NAMESPACE),
  );
  return mine.flatMap((binding) => (find(objects, binding.roleRef.kind, binding.roleRef.name).rules as Rule[]) ?? []);
}

const allows = (rules: Rule[], [group, resource, verbs]: Permission) =>
  verbs.every((verb) =>
    rules.some((rule) =>
      (rule.apiGroups ?? []).some((g) => g === group || g === '*') &&
      (rule.resources ?? []).some((r) => r === resource || r === '*') &&
      rule.verbs.some((v) => v === verb || v === '*'),
    ),
  );

describe('monitoring', () => {
  it('has a ServiceMonitor whose Service selects the node plugin\'s pods on weftd\'s metrics port', () => {
    const daemonSet = find(objects, 'DaemonSet', 'weft-node');
    const template = (daemonSet.spec as { template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } }).template.metadata;
    const metricsPort = container(podSpec(daemonSet), 'weftd').ports?.find((p) => p.name === 'metrics')?.containerPort;
    const service = find(objects, 'Service', 'weft-node-metrics');
    const serviceSpec = service.spec as { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] };
    for (const [key, value] of Object.entries(serviceSpec.selector)) expect(template.labels[key]).toBe(value);
    expect(serviceSpec.ports).toEqual([{ name: 'metrics', port: metricsPort, targetPort: 'metrics' }]);
    const monitor = find(objects, 'ServiceMonitor', 'weft-node').spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string; honorLabels?: boolean }[] };
    for (const [key, value] of Object.entries(monitor.selector.matchLabels)) expect(service.metadata.labels?.[key]).toBe(value);
    // honorLabels: the operator's own namespace and pod labels (the weftd pod's) would otherwise
    // rename the workload's on weft_volume_info and weft_workload_* to exported_namespace, exported_pod.
    expect(monitor.endpoints.map((e) => [e.port, e.path, e.honorLabels])).toEqual([['metrics', '/metrics', true]]);
    // Without the operator: Prometheus' pod discovery reads the same port from the annotations.
    expect(template.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(metricsPort), 'prometheus.io/path': '/metrics' });
  });

  it('has a PrometheusRule holding exactly the rules of exporters/prometheus/rules (npm run deploy:rules)', () => {
    const rule = find(objects, 'PrometheusRule', 'weft').spec as { groups: unknown[] };
    expect(rule.groups).toEqual(ruleGroups(path.resolve(__dirname, '..', '..', '..', 'exporters', 'prometheus', 'rules')));
  });
});

describe('RBAC', () => {
  it('gives the controller\'s service account what every sidecar in the pod needs', () => {
    const pod = podSpec(find(objects, 'Deployment', 'weft-controller'));
    const account = pod.serviceAccountName ?? 'default';
    find(objects, 'ServiceAccount', account);
    const clusterRules = boundRules(account, 'ClusterRoleBinding');
    const namespaceRules = [...clusterRules, ...boundRules(account, 'RoleBinding')];
    const missing: string[] = [];
    for (const sidecar of pod.containers) {
      for (const permission of SIDECAR_PERMISSIONS[sidecar.name] ?? []) {
        if (!allows(clusterRules, permission)) missing.push(`${sidecar.name}: ${permission[2].join(',')} ${permission[1]}`);
      }
      if ((sidecar.args ?? []).includes('--leader-election') && !allows(namespaceRules, LEADER_ELECTION)) missing.push(`${sidecar.name}: leases`);
      if ((sidecar.args ?? []).includes('--enable-capacity')) {
        for (const permission of CAPACITY) if (!allows(namespaceRules, permission)) missing.push(`${sidecar.name}: ${permission[2].join(',')} ${permission[1]}`);
      }
    }
    expect(missing).toEqual([]);
    expect(pod.containers.filter((sidecar) => SIDECAR_PERMISSIONS[sidecar.name]).length).toBe(4);
  });

  it('runs the node plugin under its own service account, with its token, allowed to read nodes (for the zone label)', () => {
    const pod = podSpec(find(objects, 'DaemonSet', 'weft-node'));
    const account = find(objects, 'ServiceAccount', pod.serviceAccountName ?? 'default');
    expect([account.automountServiceAccountToken, pod.automountServiceAccountToken]).not.toContain(false);
    expect(allows(boundRules(account.metadata.name, 'ClusterRoleBinding'), ['', 'nodes', ['get']])).toBe(true);
  });
});

describe('the examples', () => {
  const example = (kind: string, name: string) => find(objects, kind, name) as K8sObject & { spec: Record<string, never> };

  it('use a claim of a Weft StorageClass from a pod', () => {
    const pvc = example('PersistentVolumeClaim', 'weft-data');
    find(objects, 'StorageClass', pvc.spec.storageClassName);
    const pod = example('Pod', 'weft-demo').spec as unknown as { volumes: { persistentVolumeClaim?: { claimName: string } }[] };
    expect(pod.volumes.map((volume) => volume.persistentVolumeClaim?.claimName)).toContain('weft-data');
  });

  it('snapshot that claim with the Weft snapshot class and restore it into a claim at least as big', () => {
    const snapshot = example('VolumeSnapshot', 'weft-data-snap').spec as unknown as { volumeSnapshotClassName: string; source: { persistentVolumeClaimName: string } };
    find(objects, 'VolumeSnapshotClass', snapshot.volumeSnapshotClassName);
    const source = example('PersistentVolumeClaim', snapshot.source.persistentVolumeClaimName);
    const restored = example('PersistentVolumeClaim', 'weft-data-restored');
    expect(restored.spec.dataSource).toEqual({ name: 'weft-data-snap', kind: 'VolumeSnapshot', apiGroup: 'snapshot.storage.k8s.io' });
    const size = (claim: typeof source) => parseQuantity((claim.spec as unknown as { resources: { requests: { storage: string } } }).resources.requests.storage);
    expect(size(restored)).toBeGreaterThanOrEqual(size(source));
  });
});

/** "1Gi" -> 1073741824 (binary suffixes only, as the examples use). */
function parseQuantity(quantity: string): number {
  const match = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(quantity);
  if (!match) throw new Error(`unsupported quantity ${quantity}`);
  return Number(match[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi', 'Ti'].indexOf(match[2] ?? '');
}
