// The workload a volume is attached for, as the orchestrator tells the CSI node service; recorded
// on the attachment so that telemetry can report I/O per pod, allocation or task.

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
