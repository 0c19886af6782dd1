// Parameters, from a StorageClass, VolumeSnapshotClass or Nomad volume specification: a volume's
// class, replicas and locality; none for snapshots. Keys Kubernetes adds under csi.storage.k8s.io/
// are no parameters of Weft's (the claim's name and namespace among them go into the new volume's
// context: workload.ts, claimContext()); anything else is an INVALID_ARGUMENT naming the key.

import { MAX_REPLICAS } from '../../fabric/api/validate';
import { invalidArgument } from './errors';
import type { StringMap } from './messages';
import { isWeftName } from './names';

export interface VolumeParameters {
  /** Service class (pool) of the volume; absent: weftd's default. */
  class?: string;
  /** Copies wanted, each on its own node. */
  replicas: number;
  /** Place the first replica where the workload runs (controller-server.ts, locality()). */
  locality: boolean;
}

const VOLUME_KEYS = ['class', 'replicas', 'locality'];
const CO_PREFIX = 'csi.storage.k8s.io/';

export function parseParameters(parameters: StringMap): VolumeParameters {
  rejectUnknown(parameters, VOLUME_KEYS);
  return { class: serviceClass(parameters.class), replicas: replicas(parameters.replicas), locality: locality(parameters.locality) };
}

/** CreateSnapshot takes no parameters of its own. */
export function checkSnapshotParameters(parameters: StringMap): void {
  rejectUnknown(parameters, []);
}

function rejectUnknown(parameters: StringMap, known: string[]): void {
  const unknown = Object.keys(parameters).find((key) => !known.includes(key) && !key.startsWith(CO_PREFIX));
  if (unknown) throw invalidArgument(`parameter "${unknown}" is not supported (supported: ${known.join(', ') || 'none'})`);
}

function serviceClass(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!isWeftName(value)) throw invalidArgument(`parameter class "${value}" is not a service class name (letters, digits, '.', '_', '-')`);
  return value;
}

function replicas(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  const count = Number(value);
  if (!/^\d+$/.test(value) || count < 1 || count > MAX_REPLICAS) throw invalidArgument(`parameter replicas "${value}" must be a whole number of copies, from 1 to ${MAX_REPLICAS}`);
  return count;
}

function locality(value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'false') return false;
  if (value === 'true') return true;
  throw invalidArgument(`parameter locality "${value}" must be "true" or "false"`);
}
