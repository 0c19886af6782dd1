// The pod a volume is published for, read from the volume context kubelet passes to
// NodePublishVolume when the CSIDriver has podInfoOnMount: true.

import { POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, type Workload } from '../csi/workload';

/** kubelet adds it with the pod keys (adapters/csi/workload.ts) when podInfoOnMount is on. */
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
