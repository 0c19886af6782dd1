// A replicated volume as the cluster store holds it (JSON), its primary lease, and the changes a
// volume's brain makes to them, as pure functions and store transactions written as data.

import { WeftError } from '../errors';
import type { Compare, KeyValue, Txn } from './cluster-store';

export type ReplicaState = 'in-sync' | 'resyncing' | 'out' | 'failed';

/**
 * One copy of the volume. The replicas whose state is 'in-sync' are the volume's in-sync set: kept
 * in the replica list rather than in a second list, so that the two can never disagree.
 */
export interface ReplicaRecord {
  node: string;
  /** in-sync: has every acknowledged write; resyncing: being copied to; out: lacks writes; failed: being replaced. */
  state: ReplicaState;
  /**
   * Out or resyncing: the epoch of the primary whose dirty map holds what this copy lacks. A copy
   * out since an older epoch needs a full copy (resyncKind); a new copy has 0, as it lacks everything.
   */
  lastEpoch?: number;
  /**
   * It may hold writes of an older primary that the copies in step lack (it was that primary, or a
   * promotion could not raise its epoch): only a full copy brings it back (resyncKind).
   */
  diverged?: boolean;
  /** It was the primary at lastEpoch: where it may differ from the others, its activity log says (activity-log.ts). */
  wasPrimary?: boolean;
  /** A replacement: the node of the failed copy it replaces, dropped when this one is in sync. */
  replaces?: string;
}

/** Stored at volumeKey(name). */
export interface VolumeRecord {
  name: string;
  sizeBytes: number;
  class: string;
  /** In the order of preference for promotion. */
  replicas: ReplicaRecord[];
  /** The node that serves at this epoch; always in sync while it serves. */
  primary: string;
  /** Raised by each promotion; replicas refuse writes from an older one. */
  epoch: number;
  /** A clone: the snapshot it was made from, VOL@SNAP. */
  sourceSnapshot?: string;
  /** Set by the create that put the record (random): it knows its own record by it when the store's answer was lost. */
  createId?: string;
  /**
   * A revert to this snapshot is under way: copies may be reverted and others not. Whoever is
   * promoted before it is cleared owes every other copy a full copy (promoted()).
   */
  reverting?: string;
  /**
   * A snapshot of this name is being taken: some copies may hold it and others not. It is neither
   * listed nor served meanwhile; a snapshot is acknowledged only once this is cleared. Left set (its
   * primary stopped part way), whoever serves next, or the next control operation, keeps it if every
   * copy holds it and else deletes it (volume-runner.ts: dropCutShortSnapshot).
   */
  snapshotting?: string;
}

/** The record's marks of a control operation under way, named by the snapshot it is of. */
export type OperationMark = 'reverting' | 'snapshotting';

/** Stored at volumeLeaseKey(name), on the primary node's lease: it vanishes when that node's lease lapses. */
export interface PrimaryLease {
  node: string;
  epoch: number;
}


/**
 * The volume record a stored value holds, or undefined if it holds none (a hand edit, a bug of
 * another version): never a throw, since every node watches every record, and one bad value would
 * otherwise stop them all, and again at each start.
 */
export function parseVolumeRecord(value: string): VolumeRecord | undefined {
  const record = parseObject(value);
  const valid =
    typeof record?.name === 'string' && typeof record.primary === 'string' && Number.isSafeInteger(record.epoch) && Number.isSafeInteger(record.sizeBytes) &&
    Array.isArray(record.replicas) && record.replicas.every((r: unknown) => typeof (r as Partial<ReplicaRecord> | null)?.node === 'string');
  return valid ? (record as unknown as VolumeRecord) : undefined;
}

/** The primary lease a stored value holds, or undefined if it holds none (as parseVolumeRecord). */
export function parsePrimaryLease(value: string): PrimaryLease | undefined {
  const lease = parseObject(value);
  return typeof lease?.node === 'string' && Number.isSafeInteger(lease.epoch) ? (lease as unknown as PrimaryLease) : undefined;
}

/**
 * A volume's primary lease key as read at the store's revision, as its brain hears of it: the lease,
 * or null when the key is absent (as of that revision: it has none of its own); undefined if its
 * value is malformed.
 */
export function leaseAsRead(kv: KeyValue | undefined, revision: number): { type: 'primary-lease'; lease: PrimaryLease | null; modRevision: number } | undefined {
  const lease = kv ? parsePrimaryLease(kv.value) : null;
  return lease === undefined ? undefined : { type: 'primary-lease', lease, modRevision: kv?.modRevision ?? revision };
}

/** Refuses an operation on a volume whose record is malformed (parseVolumeRecord): nothing is changed. */
export function malformedRecord(name: string): WeftError {
  return new WeftError('FAILED_PRECONDITION', `the cluster store holds a malformed record for volume ${name} (key weft/${volumeKey(name)}): correct or delete it; nothing changed`);
}

/** A JSON object, or undefined for any other value (a key's value that no weftd writes). */
export function parseObject(value: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A change of the replica set that the primary commits, one transaction at a time. */
export type RecordChange =
  /** Out of the in-sync set (it failed). lastEpoch, when given, overrides the epoch it is out since. */
  | { kind: 'out'; node: string; reason: string; lastEpoch?: number; diverged?: boolean }
  | { kind: 'resync'; node: string }
  /** Back in the in-sync set, and the copy it replaces dropped. */
  | { kind: 'in-sync'; node: string }
  /** node is given up and `by`, a new copy, starts its full copy. */
  | { kind: 'replace'; node: string; by: string }
  /** Every copy was grown (by the primary, node) to sizeBytes. */
  | { kind: 'resize'; node: string; sizeBytes: number }
  /** The primary (node) begins a revert to snapshot or the taking of one, or (no snapshot) has ended it. */
  | { [K in OperationMark]: { kind: K; node: string; snapshot?: string } }[OperationMark];

/** Where every volume's record is, under volumeKey. */
export const VOLUMES = 'volumes/';
export const volumeKey = (name: string) => `${VOLUMES}${name}`;
/**
 * A copy a volume no longer names, left on `node`: the volume was deleted while the node was down,
 * or a replacement took the copy's place. The node deletes the copy, then the key (leftovers.ts).
 */
export const leftoverKey = (node: string, volume: string) => `${leftoverPrefix(node)}${volume}`;
export const leftoverPrefix = (node: string) => `leftovers/${node}/`;

/** A leftover key's value. */
export interface Leftover {
  reason: string;
  /** The copy was replaced (not deleted with its volume): its snapshots go with it. */
  replaced?: boolean;
  /**
   * The create of the volume whose copy it is (VolumeRecord.createId): a volume made again under the
   * name since, whose record may name this node (a replacement placed here), does not own the copy.
   */
  createId?: string;
}

/** A leftover key's value; one that is none (a hand edit) says no more than a key of an early version: no reason, no create. */
export function parseLeftover(value: string): Leftover {
  const parsed = parseObject(value);
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return { reason: text(parsed?.reason) ?? 'unknown', replaced: parsed?.replaced === true || undefined, createId: text(parsed?.createId) };
}

export const volumeLeaseKey = (name: string) => `volume-leases/${name}`;

/** The lease key's value, always spelt the same way, so that a transaction can compare it as a string. */
export const leaseValue = (lease: PrimaryLease) => JSON.stringify({ node: lease.node, epoch: lease.epoch });

export function inSyncNodes(record: VolumeRecord): string[] {
  return record.replicas.filter((r) => r.state === 'in-sync').map((r) => r.node);
}

/**
 * A copy that may hold writes the others lack (diverged), or a new one (lastEpoch 0), gets a full
 * copy. Any other copy out lacks only what was written since it left, which the primary knows: from
 * its own memory if it took the copy out, else from its absence log (absence-log.ts), which every
 * copy in step keeps. A primary whose log has no word of the copy makes the delta a full copy.
 */
export function resyncKind(record: VolumeRecord, replica: ReplicaRecord): 'delta' | 'full' {
  return replica.diverged || replica.lastEpoch === 0 ? 'full' : 'delta';
}

/**
 * The record once `node`, a member of the in-sync set, has taken over at the next epoch. The old
 * primary leaves the set: it may hold writes it made locally and never acknowledged, which the new
 * primary lacks. A copy being resynced by the old primary is out again, since the epoch it is out since.
 */
export function promoted(record: VolumeRecord, node: string): VolumeRecord {
  const { reverting, ...rest } = record;
  const replicas = record.replicas.map((r): ReplicaRecord => {
    // A revert cut short: any other copy may differ from this one anywhere (no activity log says where).
    if (reverting && r.node !== node && r.state !== 'failed') {
      const { wasPrimary: _notBoundedByItsLog, ...copy } = r;
      return { ...copy, state: 'out', lastEpoch: r.state === 'in-sync' ? record.epoch : r.lastEpoch, diverged: true };
    }
    if (r.node === record.primary && r.node !== node && r.state === 'in-sync') return { node: r.node, state: 'out', lastEpoch: record.epoch, diverged: true, wasPrimary: true };
    return r.state === 'resyncing' ? { ...r, state: 'out' } : r;
  });
  return { ...rest, replicas, primary: node, epoch: record.epoch + 1 };
}

export function applyChange(record: VolumeRecord, change: RecordChange): VolumeRecord {
  if (change.kind === 'resize') return { ...record, sizeBytes: change.sizeBytes };
  if (change.kind === 'reverting' || change.kind === 'snapshotting') {
    const { [change.kind]: _ended, ...rest } = record;
    return change.snapshot ? { ...record, [change.kind]: change.snapshot } : rest;
  }
  const dropped = change.kind === 'in-sync' ? replacedBy(record, change.node) : [];
  const replicas = record.replicas.flatMap((r): ReplicaRecord[] => {
    if (dropped.includes(r.node)) return [];
    if (r.node !== change.node) return [r];
    switch (change.kind) {
      case 'out':
        return [{ ...r, state: 'out', lastEpoch: change.lastEpoch ?? (r.state === 'in-sync' ? record.epoch : r.lastEpoch), ...(change.diverged ? { diverged: true } : {}) }];
      case 'resync':
        return [{ ...r, state: 'resyncing' }];
      case 'in-sync':
        return [{ node: r.node, state: 'in-sync' }];
      case 'replace':
        // A replacement replaced in turn still names what it replaced: its own replacement takes both places.
        return [{ node: r.node, state: 'failed', ...(r.replaces ? { replaces: r.replaces } : {}) }];
    }
  });
  if (change.kind === 'replace') replicas.push({ node: change.by, state: 'resyncing', lastEpoch: 0, replaces: change.node });
  return { ...record, replicas };
}

/** The copies that node's copy replaces: the one it names, and the ones that one replaced in turn. */
function replacedBy(record: VolumeRecord, node: string): string[] {
  const chain: string[] = [];
  for (let at = record.replicas.find((r) => r.node === node)?.replaces; at !== undefined && !chain.includes(at); ) {
    chain.push(at);
    at = record.replicas.find((r) => r.node === at)?.replaces;
  }
  return chain;
}

/** Take the primary lease if nobody holds it, and the record if it is still the one read: exactly one racer wins. */
export function promotionTxn(record: VolumeRecord, readRevision: number, node: string, nodeLease: string): Txn {
  const next = promoted(record, node);
  return {
    compare: [
      { key: volumeLeaseKey(record.name), target: 'createRevision', op: '=', value: 0 },
      { key: volumeKey(record.name), target: 'modRevision', op: '=', value: readRevision },
    ],
    success: [
      { type: 'put', key: volumeLeaseKey(record.name), value: leaseValue({ node, epoch: next.epoch }), lease: nodeLease },
      { type: 'put', key: volumeKey(record.name), value: JSON.stringify(next) },
    ],
  };
}

/** A change by the primary: only while it holds the lease at its epoch, and on the record it read. */
export function changeTxn(record: VolumeRecord, readRevision: number, change: RecordChange): Txn {
  const replaced = change.kind === 'in-sync' ? replacedBy(record, change.node) : [];
  return {
    compare: [holdsLease(record.name, { node: record.primary, epoch: record.epoch }), { key: volumeKey(record.name), target: 'modRevision', op: '=', value: readRevision }],
    success: [
      { type: 'put', key: volumeKey(record.name), value: JSON.stringify(applyChange(record, change)) },
      // The copies the new one replaces leave the record now: their nodes delete them.
      ...replaced.map((node) => ({ type: 'put' as const, key: leftoverKey(node, record.name), value: JSON.stringify({ reason: `replaced by the copy on ${change.node}`, replaced: true, createId: record.createId } satisfies Leftover) })),
    ],
  };
}

/**
 * The primary's lease key onto its node's lease nodeLease: moved from an ended one while still there
 * (held), or put back once it lapsed; either only on the record it read, which names it at its epoch.
 */
export function reletTxn(record: VolumeRecord, readRevision: number, lease: PrimaryLease, key: 'held' | 'lapsed', nodeLease: string): Txn {
  const keyAsSeen: Compare = key === 'held' ? holdsLease(record.name, lease) : { key: volumeLeaseKey(record.name), target: 'createRevision', op: '=', value: 0 };
  return {
    compare: [keyAsSeen, { key: volumeKey(record.name), target: 'modRevision', op: '=', value: readRevision }],
    success: [{ type: 'put', key: volumeLeaseKey(record.name), value: leaseValue(lease), lease: nodeLease }],
  };
}

/** Gives the lease up, if it is still this one, so that another in-sync replica may take over without waiting for it to lapse. */
export function releaseTxn(name: string, lease: PrimaryLease): Txn {
  return { compare: [holdsLease(name, lease)], success: [{ type: 'delete', key: volumeLeaseKey(name) }] };
}

function holdsLease(name: string, lease: PrimaryLease): Compare {
  return { key: volumeLeaseKey(name), target: 'value', op: '=', value: leaseValue(lease) };
}
