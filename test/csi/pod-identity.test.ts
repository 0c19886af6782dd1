// podIdentity(): the pod kubelet names in NodePublishVolume's volume context (podInfoOnMount).

import { podIdentity, POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, SERVICE_ACCOUNT_KEY } from '../../adapters/csi/workload';

const pod = {
  [POD_NAME_KEY]: 'web-0',
  [POD_NAMESPACE_KEY]: 'shop',
  [POD_UID_KEY]: '5f8a3c1e-2b7d-4e9f-8a6b-1c2d3e4f5a6b',
};

describe('podIdentity', () => {
  it('reads the pod kubelet passes, with its service account', () => {
    expect(podIdentity({ ...pod, [SERVICE_ACCOUNT_KEY]: 'web', 'storage.kubernetes.io/csiProvisionerIdentity': 'x' })).toEqual({
      orchestrator: 'kubernetes',
      podName: 'web-0',
      podNamespace: 'shop',
      podUid: '5f8a3c1e-2b7d-4e9f-8a6b-1c2d3e4f5a6b',
      serviceAccountName: 'web',
    });
  });

  it('leaves the service account out when kubelet does not send it', () => {
    expect(podIdentity(pod)).not.toHaveProperty('serviceAccountName');
  });

  it.each([
    ['no pod info (podInfoOnMount off, or not Kubernetes)', {}],
    ['a missing uid', { [POD_NAME_KEY]: 'web-0', [POD_NAMESPACE_KEY]: 'shop' }],
    ['an empty name', { ...pod, [POD_NAME_KEY]: ' ' }],
  ])('is undefined for %s', (_, context) => {
    expect(podIdentity(context)).toBeUndefined();
  });

  it('uses the keys kubelet uses', () => {
    expect([POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, SERVICE_ACCOUNT_KEY]).toEqual([
      'csi.storage.k8s.io/pod.name',
      'csi.storage.k8s.io/pod.namespace',
      'csi.storage.k8s.io/pod.uid',
      'csi.storage.k8s.io/serviceAccount.name',
    ]);
  });
});
