// allocationIdFromTargetPath(): the Nomad allocation in a NodePublishVolume target path.

import { allocationIdFromTargetPath } from '../../adapters/nomad/alloc-id';

const ALLOC = '5c2b7d1e-8f3a-4b6c-9d0e-1f2a3b4c5d6e';

describe('allocationIdFromTargetPath', () => {
  it.each([
    ['the default stage_publish_base_dir', `/local/csi/per-alloc/${ALLOC}/data/rw-file-system-single-node-writer`],
    ['a host path under the client data dir', `/opt/nomad/data/client/csi/node/weft/per-alloc/${ALLOC}/data/ro-file-system-single-node-reader-only`],
    ['a block device target', `/local/csi/per-alloc/${ALLOC}/data/rw-block-device-single-node-writer`],
    ['an upper-case id', `/local/csi/per-alloc/${ALLOC.toUpperCase()}/data/x`],
    ['a trailing slash', `/local/csi/per-alloc/${ALLOC}/data/x/`],
  ])('finds it in %s', (_, targetPath) => {
    expect(allocationIdFromTargetPath(targetPath)).toBe(ALLOC);
  });

  it.each([
    ['a Kubernetes target', '/var/lib/kubelet/pods/5c2b7d1e-8f3a-4b6c-9d0e-1f2a3b4c5d6e/volumes/kubernetes.io~csi/pvc-1/mount'],
    ['a staging path', '/local/csi/staging/data/rw-file-system-single-node-writer'],
    ['no volume after the id', `/local/csi/per-alloc/${ALLOC}`],
    ['an id that is not a UUID', '/local/csi/per-alloc/not-an-alloc/data/x'],
    ['a lookalike directory', `/local/csi/per-allocs/${ALLOC}/data/x`],
    ['an empty path', ''],
  ])('finds none in %s', (_, targetPath) => {
    expect(allocationIdFromTargetPath(targetPath)).toBeUndefined();
  });
});
