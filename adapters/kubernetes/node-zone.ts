// weftd --zone-from-node-label: this node's zone is a label of its Kubernetes Node object, read once at
// startup through the API (in-cluster credentials in a pod, KUBECONFIG elsewhere).

import type { Logger } from 'pino';
import { isValidZone } from '../../fabric/config';
import { loadClientNode } from './client-node';

/** An unreachable API server fails startup after this long rather than holding it forever. */
const READ_TIMEOUT_MS = 30_000;

/**
 * The value of `label` on the Node named `nodeName`; undefined (with a warning) when the node has no such
 * label. Throws when the node cannot be read: a zone silently missing would defeat the zone spread.
 */
export async function zoneFromNodeLabel(nodeName: string, label: string, logger: Logger): Promise<string | undefined> {
  const labels = await readNodeLabels(nodeName, label);
  const zone = labels[label];
  if (!zone) {
    const found = zone === undefined ? 'has no label' : 'has an empty label';
    logger.warn({ node: nodeName, label }, `Kubernetes node ${nodeName} ${found} ${label}: starting without a zone`);
    return undefined;
  }
  if (!isValidZone(zone)) throw new Error(`the label ${label} of Kubernetes node ${nodeName} is ${JSON.stringify(zone)}, which is not a zone name`);
  logger.info({ node: nodeName, label, zone }, 'zone read from the Kubernetes node');
  return zone;
}

async function readNodeLabels(nodeName: string, label: string): Promise<Record<string, string>> {
  const { CoreV1Api, KubeConfig } = await loadClientNode();
  const failure = (reason: string) => new Error(`cannot read the label ${label} of Kubernetes node ${nodeName}: ${reason}`);
  const timedOut = failure(`no answer from the Kubernetes API within ${READ_TIMEOUT_MS / 1000} s`);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut), READ_TIMEOUT_MS)));
  try {
    const config = new KubeConfig();
    config.loadFromDefault();
    const node = await Promise.race([config.makeApiClient(CoreV1Api).readNode({ name: nodeName }), timeout]);
    return node.metadata?.labels ?? {};
  } catch (error) {
    throw error === timedOut ? error : failure(apiFailure(error as ApiError));
  } finally {
    clearTimeout(timer);
  }
}

/** What went wrong, and what to do about it, from the API's answer (a Status object) or the connection's error. */
type ApiError = Error & { code?: unknown; body?: unknown };

function apiFailure(error: ApiError): string {
  if (typeof error.code !== 'number') return error.message;
  const status = statusMessage(error.body);
  const said = status ? `: ${status}` : '';
  if (error.code === 404) return `no such node (404)${said}; --node-id must be the node's name (spec.nodeName)`;
  if (error.code === 401 || error.code === 403) {
    return `${error.code === 401 ? 'unauthorized (401)' : 'forbidden (403)'}${said}; weftd's service account needs "get" on nodes (deploy/kubernetes/rbac.yaml)`;
  }
  return `the API answered ${error.code}${said}`;
}

/** The message of a Kubernetes Status object, given as parsed JSON or as its text. */
function statusMessage(body: unknown): string | undefined {
  let status = body;
  if (typeof body === 'string') {
    try {
      status = JSON.parse(body);
    } catch {
      return body.trim() || undefined;
    }
  }
  const message = (status as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : undefined;
}
