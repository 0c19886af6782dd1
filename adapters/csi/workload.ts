// The workload a volume is attached for, as the orchestrator tells the CSI node service; recorded
// on the attachment so that telemetry can report I/O per pod (and its claim), allocation (and its
// job) or task.
// The Kubernetes pod is read here, not in adapters/kubernetes, which depends on this driver and
// never the other way.

export interface Workload {
  orchestrator: 'kubernetes' | 'nomad' | 'mesos' | 'unknown';
  /** Kubernetes: csi.storage.k8s.io/pod.name, pod.namespace, pod.uid, serviceAccount.name. */
  podName?: string;
  podNamespace?: string;
  podUid?: string;
  /** Kubernetes: the PersistentVolumeClaim the volume was provisioned for (claimOf()). */
  pvcName?: string;
  pvcNamespace?: string;
  /** Nomad: the allocation id found in the target path. */
  allocationId?: string;
  /** Nomad: the allocation's job and task group, when Nomad's HTTP API told them (--nomad-addr). */
  jobId?: string;
  taskGroup?: string;
  /** Mesos: the task or container id, when known. */
  taskId?: string;
}

/** volume_context keys kubelet adds to NodePublishVolume when the CSIDriver has podInfoOnMount. */
export const POD_NAME_KEY = 'csi.storage.k8s.io/pod.name';
export const POD_NAMESPACE_KEY = 'csi.storage.k8s.io/pod.namespace';
export const POD_UID_KEY = 'csi.storage.k8s.io/pod.uid';
export const SERVICE_ACCOUNT_KEY = 'csi.storage.k8s.io/serviceAccount.name';

/**
 * CreateVolume parameters the external-provisioner adds with --extra-create-metadata. The controller
 * copies the claim's two into the new volume's volume_context, which the CO passes back to
 * NodeStageVolume and NodePublishVolume (a PersistentVolume's volumeAttributes, in Kubernetes).
 */
export const PVC_NAME_KEY = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE_KEY = 'csi.storage.k8s.io/pvc/namespace';
const CLAIM_KEYS = [PVC_NAME_KEY, PVC_NAMESPACE_KEY];

export interface PodIdentity extends Workload {
  orchestrator: 'kubernetes';
  podName: string;
  podNamespace: string;
  podUid: string;
  serviceAccountName?: string;
}

const valueOf = (map: Readonly<Record<string, string>>, key: string) => (map[key]?.trim() ? map[key] : undefined);

/** The claim's keys among CreateVolume's parameters, for the volume's volume_context; {} without them. */
export function claimContext(parameters: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(CLAIM_KEYS.flatMap((key) => (valueOf(parameters, key) ? [[key, parameters[key]]] : [])));
}

/** The claim a volume_context names (claimContext() put it there), or {} (a volume made without it). */
export function claimOf(volumeContext: Readonly<Record<string, string>>): Pick<Workload, 'pvcName' | 'pvcNamespace'> {
  const pvcName = valueOf(volumeContext, PVC_NAME_KEY);
  if (!pvcName) return {};
  const pvcNamespace = valueOf(volumeContext, PVC_NAMESPACE_KEY);
  return pvcNamespace ? { pvcName, pvcNamespace } : { pvcName };
}

/**
 * The pod in a NodePublishVolume volume context, or undefined when kubelet sent no pod info
 * (podInfoOnMount off, or another orchestrator): name, namespace and uid must all be there.
 */
export function podIdentity(volumeContext: Readonly<Record<string, string>>): PodIdentity | undefined {
  const value = (key: string) => valueOf(volumeContext, key);
  const podName = value(POD_NAME_KEY);
  const podNamespace = value(POD_NAMESPACE_KEY);
  const podUid = value(POD_UID_KEY);
  if (!podName || !podNamespace || !podUid) return undefined;
  const serviceAccountName = value(SERVICE_ACCOUNT_KEY);
  return { orchestrator: 'kubernetes', podName, podNamespace, podUid, ...(serviceAccountName ? { serviceAccountName } : {}) };
}
