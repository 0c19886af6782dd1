// A volume of the cluster is served on every node, so nothing but this stops two nodes from
// mounting the same filesystem at once (a pod moved to another node while the old one still runs):
// two kernels writing one ext4 corrupt it. Weft's access modes are single-node, so the CSI node
// service claims a volume of the cluster before it attaches it and releases the claim once it has
// detached it; a claim held by another node refuses the attach (FAILED_PRECONDITION, as
// Kubernetes' "Multi-Attach" is). The claim is a key on the node's cluster lease: a node that is
// down (dead, or cut from the store for a lease) holds none, and its volumes can be attached
// elsewhere. A node that gets a new lease claims again what it holds.
//
// Claims and releases of one volume run one at a time, so that a claim carried to a new lease
// cannot put back a claim released meanwhile. A claim whose outcome is not known (the store did not
// answer) may have been put: unless the volume is wanted after all, it is taken away again.

import { failedPrecondition, WeftError } from '../errors';
import type { Logger } from '../logger';
import { isValidName } from '../volume/names';
import { KeyedTurns } from '../keyed-turns';
import type { ClusterStore } from './cluster-store';

export const ATTACH_CLAIMS = 'attach-claims/';
export const attachClaimKey = (volume: string) => `${ATTACH_CLAIMS}${volume}`;

interface AttachClaim {
  node: string;
}

/** The node a claim's value names; undefined for a value no weftd writes. */
export function claimHolder(value: string): string | undefined {
  try {
    const node = (JSON.parse(value) as Partial<AttachClaim> | null)?.node;
    return isValidName(node) ? node : undefined;
  } catch {
    return undefined;
  }
}

/** How often a claim is tried again when the key changed under it. */
const CLAIM_ATTEMPTS = 5;
/** After a claim or release the store did not answer: when it is tried again. */
const RETRY_MS = 2000;

export class AttachClaims {
  private lease: string | null = null;
  /** The volumes this node wants claimed: attached here (claimed again on each new lease). */
  private readonly wanted = new Set<string>();
  /** Claims and releases, one at a time per volume. */
  private readonly turns = new KeyedTurns();
  /** Per volume, the retry armed (one at a time). */
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private closed = false;
  private readonly mine: string;

  constructor(
    private readonly store: ClusterStore,
    private readonly node: string,
    /** Whether the volume is one of the cluster still: only those are claimed again. */
    private readonly inCluster: (volume: string) => boolean,
    private readonly logger: Logger,
  ) {
    this.mine = JSON.stringify({ node } satisfies AttachClaim);
  }

  /** The node's cluster lease now (Membership.onLease); a new one carries the claims wanted. */
  setLease(leaseId: string | null): void {
    this.lease = leaseId;
    if (leaseId !== null) for (const volume of this.wanted) this.keep(volume);
  }

  /** Whether this node wants the volume claimed (it claimed it, and has not released it). */
  wants(volume: string): boolean {
    return this.wanted.has(volume);
  }

  /**
   * Claims the volume for this node (again, if it holds it); refused while another node holds it.
   * keepTrying: the volume is attached here already (found after a restart), so a claim the store
   * does not answer is tried again until it does.
   */
  claim(volume: string, keepTrying = false): Promise<void> {
    return this.serially(volume, async () => {
      try {
        await this.putOnCurrentLease(volume);
        this.wanted.add(volume);
      } catch (err) {
        if (isRefusal(err)) {
          this.wanted.delete(volume);
        } else if (keepTrying) {
          this.wanted.add(volume);
          this.later(volume);
        } else {
          // It may have been put all the same: not wanted, it must not stay.
          this.later(volume);
        }
        throw err;
      }
    });
  }

  /**
   * Gives the claim up, if this node holds it. With no lease, this node holds none (its claims
   * lapsed with the lease); a release the store does not answer fails, and is tried again.
   */
  release(volume: string): Promise<void> {
    return this.serially(volume, async () => {
      this.wanted.delete(volume);
      try {
        await this.drop(volume);
      } catch (err) {
        this.later(volume);
        throw err;
      }
    });
  }

  /** Stops the retries (weftd is stopping). */
  close(): void {
    this.closed = true;
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
  }

  /** Puts the claim (again) on this lease, as it should be: wanted, and still a volume of the cluster; else drops it. */
  private keep(volume: string): void {
    if (this.closed) return;
    void this.serially(volume, async () => {
      if (!this.wanted.has(volume) || !this.inCluster(volume)) {
        this.wanted.delete(volume);
        await this.drop(volume);
        return;
      }
      await this.putOnCurrentLease(volume);
    }).catch((err: unknown) => {
      if (isRefusal(err)) {
        this.wanted.delete(volume);
        this.logger.error({ volume, err }, 'a volume attached on this node was claimed by another node while this node was away: stop the workload using it here');
        return;
      }
      const what = this.wanted.has(volume) ? 'keep the claim on a volume attached here' : 'give up the claim on a volume no longer attached here';
      this.logger.warn({ volume, err }, `could not ${what}; trying again`);
      this.later(volume);
    });
  }

  /** Tries keep() again after a while: once per volume at a time, while this node has a lease. */
  private later(volume: string): void {
    if (this.closed || this.retries.has(volume)) return;
    const timer = setTimeout(() => {
      this.retries.delete(volume);
      if (this.lease !== null) this.keep(volume);
    }, RETRY_MS);
    timer.unref();
    this.retries.set(volume, timer);
  }

  /**
   * Puts the claim, then again while the lease it went on is no longer the node's: a put whose
   * answer came late (the store slow as the lease lapsed) may be on a lease that ended meanwhile,
   * after setLease carried the claims it knew of to the new one. With no lease by then, the claim
   * lapses with the lease it went on, and another node may take the volume: none is held (UNAVAILABLE).
   */
  private async putOnCurrentLease(volume: string): Promise<void> {
    let used = await this.put(volume);
    while (this.lease !== used) {
      if (this.lease === null) throw new WeftError('UNAVAILABLE', `node ${this.node} lost its cluster lease while claiming volume ${volume}; try again`);
      used = await this.put(volume);
    }
  }

  /** Puts the claim on the node's lease now; resolves with that lease. */
  private async put(volume: string): Promise<string> {
    const key = attachClaimKey(volume);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const lease = this.lease;
      if (lease === null) throw new WeftError('UNAVAILABLE', `node ${this.node} is not up in the cluster (its lease lapsed): volume ${volume} cannot be claimed now; try again`);
      const kv = await this.store.get(key);
      if (kv && kv.value !== this.mine) {
        const holder = claimHolder(kv.value) ?? 'unknown';
        throw failedPrecondition(
          `volume ${volume} is attached on node ${holder}: a volume is attached on one node at a time; ` +
            `it is released once that node has detached it (or is down)`,
        );
      }
      // Put again, on this lease, unless it changed since read: a claim on an old lease would lapse with it.
      const { succeeded } = await this.store
        .txn({
          compare: [kv ? { key, target: 'modRevision', op: '=', value: kv.modRevision } : { key, target: 'createRevision', op: '=', value: 0 }],
          success: [{ type: 'put', key, value: this.mine, lease }],
        })
        .catch((err: unknown) => {
          // The lease ended under the claim: this node is not up, which is no "not found" of the volume.
          if (err instanceof WeftError && err.kind === 'NOT_FOUND') throw new WeftError('UNAVAILABLE', `node ${this.node} lost its cluster lease while claiming volume ${volume}; try again`);
          throw err;
        });
      if (succeeded) return lease;
    }
    throw new WeftError('UNAVAILABLE', `the claim on volume ${volume} changed ${CLAIM_ATTEMPTS} times while node ${this.node} claimed it; try again`);
  }

  /** Deletes this node's claim, if the key holds it (not another node's); nothing to do without a lease. */
  private async drop(volume: string): Promise<void> {
    if (this.lease === null) return;
    const key = attachClaimKey(volume);
    await this.store.txn({ compare: [{ key, target: 'value', op: '=', value: this.mine }], success: [{ type: 'delete', key }] });
  }

  private serially(volume: string, fn: () => Promise<void>): Promise<void> {
    return this.turns.run(volume, fn);
  }
}

/** Another node holds the claim: a definite answer, not a failure to ask. */
function isRefusal(err: unknown): boolean {
  return err instanceof WeftError && err.kind === 'FAILED_PRECONDITION';
}
