// An in-sync set held in memory: the test double of the cluster store's (which commits changes in
// etcd, conditioned on the primary's lease and epoch). It logs what it commits, can refuse changes
// as a store does once the primary has lost its lease, and can hold a removal or an add until the
// test lets it commit.

import type { InSyncSet } from '../../fabric/replication/in-sync-set';

export class MemoryInSyncSet implements InSyncSet {
  private readonly ids: Set<string>;
  /** What was committed, in order ("remove r1", "add r1"); a test appends its own events too. */
  readonly log: string[] = [];
  /** While set, remove() and add() reject with it. */
  refuse: Error | undefined;
  /** While set, a removal waits for it before it commits. */
  hold: Promise<void> | undefined;
  /** Removals asked for, committed or not. */
  removeCalls = 0;
  /** While set, an add waits for it before it commits. */
  holdAdds: Promise<void> | undefined;
  /** Adds asked for, committed or not. */
  addCalls = 0;

  constructor(ids: string[]) {
    this.ids = new Set(ids);
  }

  members(): readonly string[] {
    return [...this.ids];
  }

  async remove(replicaId: string): Promise<void> {
    this.removeCalls++;
    await this.hold;
    if (this.refuse) throw this.refuse;
    this.ids.delete(replicaId);
    this.log.push(`remove ${replicaId}`);
  }

  async add(replicaId: string): Promise<void> {
    this.addCalls++;
    await this.holdAdds;
    if (this.refuse) throw this.refuse;
    this.ids.add(replicaId);
    this.log.push(`add ${replicaId}`);
  }
}
