// The workload a volume is attached for, as the orchestrator tells the CSI node service; recorded
// on the attachment so that telemetry can report I/O per pod, allocation or task.
// The Kubernetes pod is read here, not in adapters/kubernetes, which depends on this driver and
// never the other way.

export interface Workload {
  orchestrator: 'kubernetes' | 'nomad' | 'mesos' | 'unknown';
  /** Kubernetes: csi.storage.k8s.io/pod.name, pod.namespace, pod.uid, serviceAccount.name. */
  podName?: string;
  podNamespace?: string;
  podUid?: string;
  /** Nomad: the allocation id found in the target path. */
  allocationId?: string;
  /** Mesos: the task or container id, when known. */
  taskId?: string;
}

/** volume_context keys kubelet adds to NodePublishVolume when the CSIDriver has podInfoOnMount. */
export const POD_NAME_KEY = 'csi.storage.k8s.io/pod.name';
export const POD_NAMESPACE_KEY = 'csi.storage.k8s.io/pod.namespace';
export const POD_UID_KEY = 'csi.storage.k8s.io/pod.uid';
export const SERVICE_ACCOUNT_KEY = 'csi.storage.k8s.io/serviceAccount.name';

export interface PodIdentity extends Workload {
  orchestrator: 'kubernetes';
  podName: string;
  podNamespace: string;
  podUid: string;
  serviceAccountName?: string;
}

/**
 * The pod in a NodePublishVolume volume context, or undefined when kubelet sent no pod info
 * (podInfoOnMount off, or another orchestrator): name, namespace and uid must all be there.
 */
export function podIdentity(volumeContext: Readonly<Record<string, string>>): PodIdentity | undefined {
  const value = (key: string) => (volumeContext[key]?.trim() ? volumeContext[key] : undefined);
  const podName = value(POD_NAME_KEY);
  const podNamespace = value(POD_NAMESPACE_KEY);
  const podUid = value(POD_UID_KEY);
  if (!podName || !podNamespace || !podUid) return undefined;
  const serviceAccountName = value(SERVICE_ACCOUNT_KEY);
  return { orchestrator: 'kubernetes', podName, podNamespace, podUid, ...(serviceAccountName ? { serviceAccountName } : {}) };
}
