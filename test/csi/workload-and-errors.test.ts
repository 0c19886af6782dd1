// Who a publication is for (Kubernetes pod and its claim, Nomad allocation, else unknown), the claim
// CreateVolume passes on in the volume context, and how failures become CSI status codes: the
// driver's own refusals, weftd's codes per RPC, and bugs as INTERNAL.

import { status } from '@grpc/grpc-js';
import { WeftApiError } from '../../fabric/api/client';
import { failedPrecondition } from '../../fabric/errors';
import { csiStatusOf, notFound } from '../../adapters/csi/errors';
import { workloadOf } from '../../adapters/csi/node-server';
import { claimContext, POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, PVC_NAME_KEY, PVC_NAMESPACE_KEY } from '../../adapters/csi/workload';

describe('workloadOf', () => {
  const k8sTarget = '/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pvc-1/mount';

  it('is the pod kubelet names in volume_context', () => {
    const volume_context = { [POD_NAME_KEY]: 'web-0', [POD_NAMESPACE_KEY]: 'shop', [POD_UID_KEY]: 'uid-1' };
    expect(workloadOf({ volume_context, target_path: k8sTarget })).toEqual({ orchestrator: 'kubernetes', podName: 'web-0', podNamespace: 'shop', podUid: 'uid-1' });
  });

  it('adds the claim the volume context names (CreateVolume put it there), and is Kubernetes with the claim alone', () => {
    const pod = { [POD_NAME_KEY]: 'web-0', [POD_NAMESPACE_KEY]: 'shop', [POD_UID_KEY]: 'uid-1' };
    const claim = { [PVC_NAME_KEY]: 'data-web-0', [PVC_NAMESPACE_KEY]: 'shop' };
    expect(workloadOf({ volume_context: { ...pod, ...claim, class: 'ssd' }, target_path: k8sTarget })).toEqual({
      orchestrator: 'kubernetes', podName: 'web-0', podNamespace: 'shop', podUid: 'uid-1', pvcName: 'data-web-0', pvcNamespace: 'shop',
    });
    expect(workloadOf({ volume_context: claim, target_path: k8sTarget })).toEqual({ orchestrator: 'kubernetes', pvcName: 'data-web-0', pvcNamespace: 'shop' });
    expect(workloadOf({ volume_context: { ...pod, [PVC_NAME_KEY]: ' ' }, target_path: k8sTarget })).not.toHaveProperty('pvcName');
  });

  it('is the Nomad allocation in the target path', () => {
    const target_path = '/local/csi/per-alloc/5B1E3A4C-9F2D-4E8A-B7C6-1D2E3F4A5B6C/data/rw-file-system-single-node-writer';
    expect(workloadOf({ volume_context: {}, target_path })).toEqual({ orchestrator: 'nomad', allocationId: '5b1e3a4c-9f2d-4e8a-b7c6-1d2e3f4a5b6c' });
  });

  it('is unknown otherwise (Mesos tells neither)', () => {
    expect(workloadOf({ volume_context: {}, target_path: k8sTarget })).toEqual({ orchestrator: 'unknown' });
  });
});

describe('claimContext', () => {
  it("keeps the claim's name and namespace of the external-provisioner's parameters, nothing else", () => {
    const parameters = {
      class: 'ssd',
      [PVC_NAME_KEY]: 'data-web-0',
      [PVC_NAMESPACE_KEY]: 'shop',
      'csi.storage.k8s.io/pv/name': 'pvc-5f8a3c1e',
    };
    expect(claimContext(parameters)).toEqual({ 'csi.storage.k8s.io/pvc/name': 'data-web-0', 'csi.storage.k8s.io/pvc/namespace': 'shop' });
    expect(claimContext({ class: 'ssd' })).toEqual({});
  });
});

describe('csiStatusOf', () => {
  it("keeps the driver's own code and message", () => {
    expect(csiStatusOf(notFound('volume x does not exist'), 'NodeStageVolume')).toEqual({ code: status.NOT_FOUND, details: 'volume x does not exist' });
  });

  it("keeps weftd's code unless the spec names another for that RPC", () => {
    const full = new WeftApiError(status.RESOURCE_EXHAUSTED, 'does not fit');
    expect(csiStatusOf(full, 'CreateVolume').code).toBe(status.RESOURCE_EXHAUSTED);
    expect(csiStatusOf(full, 'ControllerExpandVolume').code).toBe(status.OUT_OF_RANGE);
    // The spec's FAILED_PRECONDITION for an expand is "in use, offline only": external-resizer would wait for the pods to go.
    const notNow = new WeftApiError(status.FAILED_PRECONDITION, 'resizing volume v needs every copy in sync');
    expect(csiStatusOf(notNow, 'ControllerExpandVolume').code).toBe(status.UNAVAILABLE);
    expect(csiStatusOf(notNow, 'CreateSnapshot').code).toBe(status.FAILED_PRECONDITION);
    const down = new WeftApiError(status.UNAVAILABLE, 'cannot reach weftd');
    expect(csiStatusOf(down, 'CreateVolume').code).toBe(status.UNAVAILABLE);
    expect(csiStatusOf(down, 'Probe')).toEqual({ code: status.FAILED_PRECONDITION, details: 'cannot reach weftd' });
  });

  it("maps a host helper's WeftError by its kind", () => {
    const refused = failedPrecondition('/dev/loop3 holds a xfs filesystem, not ext4: refusing to format it');
    expect(csiStatusOf(refused, 'NodeStageVolume')).toEqual({ code: status.FAILED_PRECONDITION, details: refused.message });
  });

  it('reports anything else as INTERNAL', () => {
    expect(csiStatusOf(new TypeError('x is undefined'), 'ListVolumes')).toEqual({ code: status.INTERNAL, details: 'x is undefined' });
  });
});
