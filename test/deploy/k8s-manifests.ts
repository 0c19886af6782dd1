// Loads the Kubernetes manifests of deploy/kubernetes (multi-document YAML) and finds objects,
// containers, volumes and args in them for the deployment tests.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

export const KUBERNETES_DIR = path.resolve(__dirname, '..', '..', '..', 'deploy', 'kubernetes');

// Loose shapes of what the tests read; the schema test checks the real shapes.
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}
export interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  startupProbe?: { httpGet?: { path: string; port: number | string }; periodSeconds?: number; failureThreshold?: number };
  securityContext?: { privileged?: boolean };
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }[];
}
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  emptyDir?: object;
}
export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  containers: Container[];
  volumes?: Volume[];
}

export interface ManifestFile {
  file: string;
  objects: K8sObject[];
}

/** Every .yaml under deploy/kubernetes (examples too), each document parsed; YAML errors throw. */
export function loadManifests(): ManifestFile[] {
  const files = listYaml(KUBERNETES_DIR);
  return files.map((file) => ({ file: path.relative(KUBERNETES_DIR, file), objects: parseDocuments(file) }));
}

function listYaml(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return listYaml(full);
    return entry.name.endsWith('.yaml') ? [full] : [];
  });
}

function parseDocuments(file: string): K8sObject[] {
  const documents = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const problems = documents.flatMap((document) => [...document.errors, ...document.warnings].map((e) => e.message));
  if (problems.length) throw new Error(`${file}: ${problems.join('; ')}`);
  return documents.map((document) => document.toJS() as K8sObject).filter((object) => object !== null);
}

export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found;
}

export const podSpec = (workload: K8sObject) => (workload.spec as { template: { spec: PodSpec } }).template.spec;

export function container(pod: PodSpec, name: string): Container {
  const found = pod.containers.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

/** The pod volume mounted at mountPath in a container. */
export function volumeAt(pod: PodSpec, owner: Container, mountPath: string): Volume {
  const mount = owner.volumeMounts?.find((candidate) => candidate.mountPath === mountPath);
  const volume = pod.volumes?.find((candidate) => candidate.name === mount?.name);
  if (!mount || !volume) throw new Error(`container ${owner.name} mounts no volume at ${mountPath}`);
  return volume;
}

/** Values kubelet would put in env fieldRefs, for expanding $(VAR) in args. */
const SAMPLE_FIELDS: Record<string, string> = {
  'spec.nodeName': 'node-1',
  'status.hostIP': '10.0.0.11',
  'status.podIP': '10.244.1.7',
  'metadata.name': 'weft-pod-0',
  'metadata.namespace': 'weft-system',
};

/** The container's args with $(VAR) expanded from its env as Kubernetes does; an unknown variable throws. */
export function expandedArgs(owner: Container): string[] {
  const env = new Map((owner.env ?? []).map((variable) => [variable.name, variable.value ?? SAMPLE_FIELDS[variable.valueFrom?.fieldRef?.fieldPath ?? '']]));
  return (owner.args ?? []).map((arg) =>
    arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      const value = env.get(name);
      if (value === undefined) throw new Error(`container ${owner.name}: $(${name}) is not defined in its env`);
      return value;
    }),
  );
}
