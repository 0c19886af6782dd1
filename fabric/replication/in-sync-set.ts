// What replication needs from the cluster store: the volume's in-sync set, and changes to it that
// are committed (conditioned on the primary's lease and epoch) before they resolve.

export interface InSyncSet {
  /** The ids of the remote replicas in the set now (the primary's own copy is always a member). */
  members(): readonly string[];
  /**
   * Takes a replica out of the set. Resolves once that is committed in the store; rejects if it
   * could not be (the primary has lost its lease, or the store cannot be reached).
   */
  remove(replicaId: string, reason: string): Promise<void>;
  /** Puts a replica that has caught up back in the set; resolves once committed, else rejects. */
  add(replicaId: string): Promise<void>;
}
