// The names and paths that the Kubernetes manifests in deploy/kubernetes and the CSI driver must agree
// on; test/deploy/kubernetes.test.ts checks every manifest against them.

import { PLUGIN_NAME } from '../csi/identity-server';

/** The CSI plugin name (Identity's GetPluginInfo), which CSIDriver, StorageClasses and the registrar use. */
export const CSI_DRIVER_NAME = PLUGIN_NAME;

/** Topology segments NodeGetInfo reports; csi-provisioner (Topology=true) turns them into PV node affinity. */
export { NODE_KEY as TOPOLOGY_NODE_KEY, ZONE_KEY as TOPOLOGY_ZONE_KEY } from '../csi/topology';

/** The node label the node plugin takes its zone from (--zone-from-node-label): Kubernetes' well-known zone label. */
export const NODE_ZONE_LABEL = 'topology.kubernetes.io/zone';

export const NAMESPACE = 'weft-system';
export const IMAGE = 'ghcr.io/weft-storage/weft:0.1.0';

/** Where weftd serves CSI inside its container; the plugin dir is mounted at /csi. */
export const CONTAINER_SOCKET_DIR = '/csi';
export const CONTAINER_CSI_ENDPOINT = `unix://${CONTAINER_SOCKET_DIR}/csi.sock`;

export const KUBELET_DIR = '/var/lib/kubelet';
/** Host directory of the node plugin's socket; kubelet finds it there through the registrar. */
export const PLUGIN_DIR = `${KUBELET_DIR}/plugins/${CSI_DRIVER_NAME}`;
export const REGISTRATION_PATH = `${PLUGIN_DIR}/csi.sock`;
export const REGISTRY_DIR = `${KUBELET_DIR}/plugins_registry`;
export const DATA_DIR = '/var/lib/weft';

/** The sidecars and the versions the manifests pin. */
export const SIDECAR_IMAGES = {
  provisioner: 'registry.k8s.io/sig-storage/csi-provisioner:v4.0.1',
  snapshotter: 'registry.k8s.io/sig-storage/csi-snapshotter:v7.0.2',
  resizer: 'registry.k8s.io/sig-storage/csi-resizer:v1.10.1',
  healthMonitor: 'registry.k8s.io/sig-storage/csi-external-health-monitor-controller:v0.11.0',
  registrar: 'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.10.1',
  livenessProbe: 'registry.k8s.io/sig-storage/livenessprobe:v2.12.0',
} as const;
