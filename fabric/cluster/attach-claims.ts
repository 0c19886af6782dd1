// A volume of the cluster is served on every node, so nothing but this stops two nodes from
// mounting the same filesystem at once (a pod moved to another node while the old one still runs):
// two kernels writing one ext4 corrupt it. Weft's access modes are single-node, so the CSI node
// service claims a volume of the cluster before it attaches it and releases the claim once it has
// detached it; a claim held by another node refuses the attach (FAILED_PRECONDITION, as
// Kubernetes' "Multi-Attach" is). The claim is a key on the node's cluster lease: a node that is
// down (dead, or cut from the store for a lease) holds none, and its volumes can be attached
// elsewhere. A node that gets a new lease claims again what it holds.

import { failedPrecondition, WeftError } from '../errors';
import type { Logger } from '../logger';
import type { ClusterStore } from './cluster-store';

export const attachClaimKey = (volume: string) => `attach-claims/${volume}`;

interface AttachClaim {
  node: string;
}

/** How often a claim is tried again when the key changed under it. */
const CLAIM_ATTEMPTS = 5;

export class AttachClaims {
  private lease: string | null = null;
  /** The volumes this node holds claims on (to claim again on a new lease). */
  private readonly held = new Set<string>();

  constructor(
    private readonly store: ClusterStore,
    private readonly node: string,
    private readonly logger: Logger,
  ) {}

  /** The node's cluster lease now (Membership.onLease); a new one carries the claims held. */
  setLease(leaseId: string | null): void {
    this.lease = leaseId;
    if (leaseId === null) return;
    for (const volume of this.held) {
      this.claim(volume).catch((err: unknown) => this.logger.error({ volume, err }, 'could not claim again, on a new cluster lease, a volume attached on this node'));
    }
  }

  /** Claims the volume for this node (again, if it holds it); refused while another node holds it. */
  async claim(volume: string): Promise<void> {
    const key = attachClaimKey(volume);
    const mine = JSON.stringify({ node: this.node } satisfies AttachClaim);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const lease = this.lease;
      if (lease === null) throw new WeftError('UNAVAILABLE', `node ${this.node} is not up in the cluster (its lease lapsed): volume ${volume} cannot be claimed now; try again`);
      const kv = await this.store.get(key);
      if (kv && kv.value !== mine) {
        const holder = (JSON.parse(kv.value) as AttachClaim).node;
        this.held.delete(volume);
        throw failedPrecondition(
          `volume ${volume} is attached on node ${holder}: a volume is attached on one node at a time; ` +
            `it is released once that node has detached it (or is down)`,
        );
      }
      // Put again, on this lease, unless it changed since read: a claim on an old lease would lapse with it.
      const { succeeded } = await this.store.txn({
        compare: [kv ? { key, target: 'modRevision', op: '=', value: kv.modRevision } : { key, target: 'createRevision', op: '=', value: 0 }],
        success: [{ type: 'put', key, value: mine, lease }],
      });
      if (succeeded) {
        this.held.add(volume);
        return;
      }
    }
    throw new WeftError('UNAVAILABLE', `the claim on volume ${volume} changed ${CLAIM_ATTEMPTS} times while node ${this.node} claimed it; try again`);
  }

  /**
   * Gives the claim up, if this node holds it. One it does not hold asks nothing of the store (a
   * volume of this node alone, while the store is out of reach): a claim of this node that this
   * process did not make was made on the lease of an earlier run, which lapses with it.
   */
  async release(volume: string): Promise<void> {
    if (!this.held.has(volume)) return;
    const key = attachClaimKey(volume);
    await this.store.txn({ compare: [{ key, target: 'value', op: '=', value: JSON.stringify({ node: this.node } satisfies AttachClaim) }], success: [{ type: 'delete', key }] });
    this.held.delete(volume);
  }
}
