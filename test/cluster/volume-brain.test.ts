// The volume brain (fabric/cluster/volume-brain.ts) as tables: what one node does for one volume
// after each event. Every row also checks that the same event again asks for nothing more. The
// promotion race runs its transactions on a real (embedded) cluster store.

import pino from 'pino';
import { StoreUnavailableError, type ClusterStore, type Txn, type TxnResult } from '../../fabric/cluster/cluster-store';
import type { EmbeddedStore } from '../../fabric/cluster/embedded-store';
import type { NodeCandidate } from '../../fabric/cluster/placement';
import { promotionRank, step } from '../../fabric/cluster/volume-brain';
import { DEFAULT_BRAIN_CONFIG, initialBrainState, type BrainAction, type BrainEvent, type BrainState } from '../../fabric/cluster/volume-brain-state';
import { VolumeRunner, type RunnerContext } from '../../fabric/cluster/volume-runner';
import { inSyncNodes, leaseValue, volumeKey, volumeLeaseKey, type ReplicaRecord, type VolumeRecord } from '../../fabric/cluster/volume-record';
import type { InSyncSet } from '../../fabric/replication/in-sync-set';
import { EpochFence } from '../../fabric/volume/epoch-fence';
import { freshEmbeddedStore, withCalls } from '../helpers/embedded-store';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from '../replication/primary-volume';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const T0 = 1_000_000;
const TIMEOUT = DEFAULT_BRAIN_CONFIG.replicaTimeoutMs;
const RETRY = DEFAULT_BRAIN_CONFIG.resyncRetryMs;

/** Volume "pvc" at epoch 3, primary a; replicas a, b, c in sync unless `states` says otherwise. Its promotion rank is a, b, c (checked below). */
function record(states: Record<string, Partial<ReplicaRecord>> = {}, more: Partial<VolumeRecord> = {}): VolumeRecord {
  const nodes = ['a', 'b', 'c', ...Object.keys(states).filter((n) => !'abc'.includes(n))];
  const replicas = nodes.map((node): ReplicaRecord => ({ node, state: 'in-sync', ...states[node] }));
  return { name: 'pvc', sizeBytes: 10 * GiB, class: 'default', primary: 'a', epoch: 3, replicas, ...more };
}

/** Nodes a to e, up except those named down. */
function nodes(...down: string[]): NodeCandidate[] {
  return ['a', 'b', 'c', 'd', 'e'].map((id, i) => ({ id, up: !down.includes(id), pools: [{ class: 'default', capacityBytes: 100 * GiB, usedBytes: i * GiB }] }));
}

/** A node that follows: it knows the record and the primary lease (both as of revision 10), and (since T0) the members. */
function follower(self: string, rec: VolumeRecord, down: string[] = []): BrainState {
  const state: BrainState = { ...initialBrainState(self), nodeLease: `L-${self}`, record: rec, recordRevision: 10, lease: { node: rec.primary, epoch: rec.epoch }, leaseRevision: 10 };
  return step(state, { type: 'nodes', nodes: nodes(...down) }, T0).state;
}

/** The record's primary, serving at the record's epoch, which it took in this life; it has seen the members since T0. */
function primary(rec: VolumeRecord, down: string[] = []): BrainState {
  const state: BrainState = { ...follower(rec.primary, rec), role: 'serving', claimedEpoch: rec.epoch, leaseOn: `L-${rec.primary}` };
  return step(state, { type: 'nodes', nodes: nodes(...down) }, T0).state;
}

type Timed = BrainEvent | [BrainEvent, number];

/** Feeds the events (at T0 unless timed); returns the last state and the actions of the last event. */
function run(state: BrainState, events: Timed[]): { state: BrainState; actions: BrainAction[]; last: [BrainEvent, number] } {
  let actions: BrainAction[] = [];
  let last: [BrainEvent, number] = [{ type: 'tick' }, T0];
  for (const timed of events) {
    last = Array.isArray(timed) ? timed : [timed, T0];
    ({ state, actions } = step(state, last[0], last[1]));
  }
  return { state, actions, last };
}

const leaseGone: BrainEvent = { type: 'primary-lease', lease: null, modRevision: 10 };
const committed = (id: string, revision = 11): BrainEvent => ({ type: 'txn-result', id, committed: true, revision });
const refused = (id: string): BrainEvent => ({ type: 'txn-result', id, committed: false });
const failed = (replica: string): BrainEvent => ({ type: 'replica-failed', replica, reason: 'write timed out' });
const localFailed: BrainEvent = { type: 'local-failed', reason: 'its own copy failed a request the others could serve: pool ssd is full' };
const diverged = (replica: string): BrainEvent => ({ type: 'replica-diverged', replica, reason: 'a revert failed' });

/** Actions, with each transaction shown as its id, delay, and the record it would put. */
function summary(actions: BrainAction[]) {
  return actions.map((a) => (a.type === 'txn' ? { txn: a.id, delayMs: a.delayMs, puts: a.txn.success.map((o) => (o.type === 'put' && o.key.startsWith('volumes/') ? JSON.parse(o.value) : o)) } : a));
}

const promotedByB = { ...record({ a: { state: 'out', lastEpoch: 3, diverged: true, wasPrimary: true } }), primary: 'b', epoch: 4 };
const promotedByC = { ...record({ a: { state: 'out', lastEpoch: 3, diverged: true, wasPrimary: true } }), primary: 'c', epoch: 4 };

describe.each<[string, string, BrainState, Timed[], unknown[]]>([
  ['1, 2, 5', 'the first in-sync replica that is up takes over at once, bumping the epoch and taking the old primary out', follower('b', record(), ['a']), [leaseGone], [
    { txn: 'promote@4', delayMs: 0, puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'b', epoch: 4 }), lease: 'L-b' }, promotedByB] },
  ]],
  ['3', 'a new volume starts on the primary placement chose, even when another replica hears of it first', follower('a', record({}, { epoch: 0, primary: 'c' })), [leaseGone], []],
  ['3', 'a new volume whose chosen primary is down starts on the first in-sync replica that is up', follower('a', record({}, { epoch: 0, primary: 'c' }), ['c']), [leaseGone], [
    { txn: 'promote@1', delayMs: 0, puts: expect.anything() },
  ]],
  ['5', 'the next one waits one step per better-ranked candidate', follower('c', record(), ['a']), [leaseGone], [{ txn: 'promote@4', delayMs: DEFAULT_BRAIN_CONFIG.promotionStepMs, puts: expect.anything() }]],
  ['5', 'a candidate whose node is down does not count in the ranking', follower('c', record(), ['a', 'b']), [leaseGone], [{ txn: 'promote@4', delayMs: 0, puts: expect.anything() }]],
  ['1', 'an out replica never takes over, even as the last one up: unavailable, and why', follower('c', record({ c: { state: 'out', lastEpoch: 3 } }), ['a', 'b']), [leaseGone], [
    { type: 'report', health: 'unavailable', reason: expect.stringMatching(/no in-sync replica is up \(in-sync: a, b\); c is out and may not be promoted: it may lack acknowledged writes/) },
  ]],
  ['1', 'an out replica leaves it to an in-sync one that is up', follower('c', record({ c: { state: 'out', lastEpoch: 3 } }), ['a']), [leaseGone], []],
  ['3', 'a node without its lease does not take over', follower('b', record(), ['a']), [{ type: 'node-lease', leaseId: null }, leaseGone], []],
  ['6', "the lease's watch ahead of the records': a promotion's lease, its end, then the promotion's record: the next in-sync replica takes over", follower('b', record(), ['a', 'c']), [
    { type: 'primary-lease', lease: { node: 'c', epoch: 4 }, modRevision: 11 },
    { type: 'primary-lease', lease: null, modRevision: 12 },
    { type: 'record', record: promotedByC, modRevision: 11 },
  ], [{ txn: 'promote@5', delayMs: 0, puts: expect.anything() }]],
  ['6', 'a primary does not stop for a lease older than the one it has seen (a read, then the watch replaying what came before)', primary(record()), [
    { type: 'primary-lease', lease: { node: 'a', epoch: 2 }, modRevision: 5 },
  ], []],
  ['6', 'a node just promoted does not stop for a lease event older than its promotion (the watch replaying what it had not seen)', follower('b', record(), ['a']), [
    leaseGone,
    committed('promote@4', 12),
    { type: 'primary-lease', lease: { node: 'c', epoch: 3 }, modRevision: 11 },
  ], []],
  ['3', 'a restarted primary does not serve on its old lease: it waits for it to lapse', { ...follower('a', record()), lease: undefined }, [{ type: 'primary-lease', lease: { node: 'a', epoch: 3 }, modRevision: 10 }], []],
  ['3', 'a restarted primary takes over afresh, at a new epoch, once its old lease has lapsed', follower('a', record()), [leaseGone], [{ txn: 'promote@4', delayMs: 0, puts: [expect.anything(), { ...record(), epoch: 4 }] }]],
  ['2', 'promoted: raises the epoch of its own copy, then of the members, and does not serve yet', follower('b', record(), ['a']), [leaseGone, committed('promote@4')], [
    { type: 'raise-epoch', epoch: 4, replicas: ['b', 'c'] },
  ]],
  ['2', 'its answer lost, the record says it won: raises all the same', follower('b', record(), ['a']), [leaseGone, refused('promote@4'), { type: 'record', record: promotedByB, modRevision: 11 }], [
    { type: 'raise-epoch', epoch: 4, replicas: ['b', 'c'] },
  ]],
  ['2', 'epochs raised: serves, and counts the grace period of the old primary from now', follower('b', record(), ['a']), [leaseGone, committed('promote@4'), { type: 'epochs-raised', epoch: 4, unreachable: [] }], [
    { type: 'serve', epoch: 4 },
    { type: 'wake', atMs: T0 + TIMEOUT },
  ]],
  ['2, 6', 'a member it could not raise is taken out first, as out since the old epoch (a full copy later)', follower('b', record(), ['a']), [leaseGone, committed('promote@4'), { type: 'epochs-raised', epoch: 4, unreachable: ['c'] }], [
    { txn: 'out:c@11', delayMs: undefined, puts: [{ ...promotedByB, replicas: [{ node: 'a', state: 'out', lastEpoch: 3, diverged: true, wasPrimary: true }, { node: 'b', state: 'in-sync' }, { node: 'c', state: 'out', lastEpoch: 3, diverged: true }] }] },
  ]],
  ['2', '... and serves once that is committed', follower('b', record(), ['a']), [leaseGone, committed('promote@4'), { type: 'epochs-raised', epoch: 4, unreachable: ['c'] }, committed('out:c@11', 12)], [
    { type: 'serve', epoch: 4 },
    { type: 'wake', atMs: T0 + TIMEOUT },
    { txn: 'resync:c@12', delayMs: undefined, puts: expect.anything() },
  ]],
  ['2', 'its own copy could not be raised: stops and gives the lease back', follower('b', record(), ['a']), [leaseGone, committed('promote@4'), { type: 'epochs-raised', epoch: 4, unreachable: ['b'] }], [
    { type: 'stop-serving', reason: 'could not raise the epoch of its own copy to 4' },
    { txn: 'release@4', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] },
  ]],
  ['2', '... and waits a resync retry before it tries again (its disk may be failing), so that another member goes first', follower('b', record(), ['a']), [leaseGone, committed('promote@4'), { type: 'epochs-raised', epoch: 4, unreachable: ['b'] }, { type: 'record', record: promotedByB, modRevision: 11 }, { ...leaseGone, modRevision: 12 }], [
    { txn: 'promote@5', delayMs: DEFAULT_BRAIN_CONFIG.resyncRetryMs, puts: expect.anything() },
  ]],
  ['2', 'it could not serve (its copy failed while it made the copies equal): stops and gives the lease back', primary(record()), [{ type: 'serve-failed', epoch: 3, reason: 'EIO' }], [
    { type: 'stop-serving', reason: 'could not serve epoch 3: EIO' },
    { txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] },
  ]],
  ['5', '... and waits a resync retry before it tries again, so that another member goes first', primary(record()), [{ type: 'serve-failed', epoch: 3, reason: 'EIO' }, leaseGone], [
    { txn: 'promote@4', delayMs: DEFAULT_BRAIN_CONFIG.resyncRetryMs, puts: expect.anything() },
  ]],
  ['3', 'its node lease renewed (the old one ended) while its promotion was on its way: promotes again, on the new lease', follower('b', record(), ['a']), [leaseGone, { type: 'node-lease', leaseId: 'L-b2' }], [
    { txn: 'promote@4', delayMs: 0, puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'b', epoch: 4 }), lease: 'L-b2' }, promotedByB] },
  ]],
  ['3', 'its node lease lost while its promotion was on its way: gives it up, and promotes again once it has one (after the grace a rejoined node gives the primary)', follower('b', record(), ['a']), [leaseGone, { type: 'node-lease', leaseId: null }, { type: 'node-lease', leaseId: 'L-b2' }], [
    { txn: 'promote@4', delayMs: DEFAULT_BRAIN_CONFIG.rejoinGraceMs, puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'b', epoch: 4 }), lease: 'L-b2' }, promotedByB] },
  ]],
  ['5', 'its promotion refused, another won: follows', follower('c', record(), ['a']), [leaseGone, refused('promote@4'), { type: 'record', record: promotedByB, modRevision: 11 }], []],
  ['3', 'a higher epoch in the record: the old primary stops', primary(record()), [{ type: 'record', record: promotedByB, modRevision: 11 }], [
    { type: 'stop-serving', reason: 'b was promoted at epoch 4 (this node served epoch 3)' },
  ]],
  ['6', 'its node lease lost (an etcd outage): serves on, asking the store nothing', primary(record()), [{ type: 'node-lease', leaseId: null }], []],
  ['6', 'fenced by a replica: stops, and leaves the lease to lapse', primary(record()), [{ type: 'fenced' }], [
    { type: 'stop-serving', reason: 'a replica refused a write of epoch 3: a newer primary raised its epoch' },
  ]],
  ['3', 'every copy grown: the primary records the new size, conditioned on its lease', primary(record()), [{ type: 'resized', sizeBytes: 20 * GiB }], [
    { txn: 'resize:a@10', delayMs: undefined, puts: [record({}, { sizeBytes: 20 * GiB })] },
  ]],
  ['3', 'a revert begins: the primary has the record say so first, conditioned on its lease', primary(record()), [{ type: 'reverting', snapshot: 's1' }], [
    { txn: 'reverting:a@10', delayMs: undefined, puts: [record({}, { reverting: 's1' })] },
  ]],
  ['3', '... and ends: the mark goes', primary(record({}, { reverting: 's1' })), [{ type: 'reverting' }], [
    { txn: 'reverting:a@10', delayMs: undefined, puts: [record()] },
  ]],
  ['3', 'a snapshot begins: the primary has the record mark it first, conditioned on its lease', primary(record()), [{ type: 'snapshotting', snapshot: 's1' }], [
    { txn: 'snapshotting:a@10', delayMs: undefined, puts: [record({}, { snapshotting: 's1' })] },
  ]],
  ['3', '... and ends: the mark goes', primary(record({}, { snapshotting: 's1' })), [{ type: 'snapshotting' }], [
    { txn: 'snapshotting:a@10', delayMs: undefined, puts: [record()] },
  ]],
  ['3', 'a second mark waits behind one sent, and takes the place of one queued: none is dropped (its waiter would wait for good); once the first is in, the last asked is sent', primary(record()), [
    { type: 'snapshotting', snapshot: 's1' },
    { type: 'snapshotting' },
    { type: 'snapshotting', snapshot: 's2' },
    committed('snapshotting:a@10', 11),
  ], [
    { txn: 'snapshotting:a@11', delayMs: undefined, puts: [record({}, { snapshotting: 's2' })] },
  ]],
  ['3', 'a resize asked while another is on its way follows it, at the largest size asked, once the first is in', primary(record()), [
    { type: 'resized', sizeBytes: 20 * GiB },
    { type: 'resized', sizeBytes: 30 * GiB },
    { type: 'resized', sizeBytes: 25 * GiB },
    committed('resize:a@10', 11),
  ], [
    { txn: 'resize:a@11', delayMs: undefined, puts: [record({}, { sizeBytes: 30 * GiB })] },
  ]],
  ['3', 'a resize smaller than one on its way is not recorded after it (the record never shrinks)', primary(record()), [
    { type: 'resized', sizeBytes: 30 * GiB },
    { type: 'resized', sizeBytes: 20 * GiB },
    committed('resize:a@10', 11),
  ], []],
  ['3', 'a snapshot is marked by the primary only', follower('b', record(), ['a']), [{ type: 'snapshotting', snapshot: 's1' }], []],
  ['2', 'promoted while a snapshot was being taken: the mark stays (the new primary deletes the snapshot from every copy), no copy is out for it', follower('b', record({}, { snapshotting: 's1' }), ['a']), [leaseGone], [
    {
      txn: 'promote@4',
      delayMs: 0,
      puts: [
        { type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'b', epoch: 4 }), lease: 'L-b' },
        { ...record({ a: { state: 'out', lastEpoch: 3, diverged: true, wasPrimary: true } }, { snapshotting: 's1' }), primary: 'b', epoch: 4 },
      ],
    },
  ]],
  ['2', 'promoted while a revert was under way: every other copy is out as diverged (a full copy: the old primary too, whose activity log does not cover a revert)', follower('b', record({ c: { state: 'resyncing', lastEpoch: 2 } }, { reverting: 's1' }), ['a']), [leaseGone], [
    {
      txn: 'promote@4',
      delayMs: 0,
      puts: [
        { type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'b', epoch: 4 }), lease: 'L-b' },
        { ...record({ a: { state: 'out', lastEpoch: 3, diverged: true }, c: { state: 'out', lastEpoch: 2, diverged: true } }), primary: 'b', epoch: 4 },
      ],
    },
  ]],
  ['3', 'a resize is recorded by the primary only', follower('b', record(), ['a']), [{ type: 'resized', sizeBytes: 20 * GiB }], []],
  ['6', 'fenced while a follower: nothing to stop', follower('b', record(), ['a']), [{ type: 'fenced' }], []],
  ['6', "another node's primary lease: stops", primary(record()), [{ type: 'primary-lease', lease: { node: 'b', epoch: 4 }, modRevision: 11 }], [
    { type: 'stop-serving', reason: 'lost the primary lease of epoch 3 to b at epoch 4' },
  ]],
  ['6', 'its primary lease gone (lapsed with its node lease in an etcd outage): serves on, and puts it back on its node lease, on the record it read', primary(record()), [leaseGone], [
    { txn: 'relet:L-a@10/10', delayMs: undefined, puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'a', epoch: 3 }), lease: 'L-a' }] },
  ]],
  ['6', '... without a node lease, it waits for the new one', primary(record()), [{ type: 'node-lease', leaseId: null }, leaseGone, { type: 'node-lease', leaseId: 'L-a2' }], [
    { txn: 'relet:L-a2@10/10', delayMs: undefined, puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'a', epoch: 3 }), lease: 'L-a2' }] },
  ]],
  ['6', '... its node lease lost again before the store answered: sent again on the next one', primary(record()), [leaseGone, { type: 'node-lease', leaseId: null }, { type: 'node-lease', leaseId: 'L-a2' }], [
    expect.objectContaining({ txn: 'relet:L-a2@10/10' }),
  ]],
  ['6', '... its own put seen by the watch before the answer: nothing more to do', primary(record()), [
    { type: 'node-lease', leaseId: null },
    leaseGone,
    { type: 'node-lease', leaseId: 'L-a2' },
    { type: 'primary-lease', lease: { node: 'a', epoch: 3 }, modRevision: 11 },
    committed('relet:L-a2@10/10', 11),
  ], []],
  ['6', '... refused, then the lease of the node promoted meanwhile: stops', primary(record()), [leaseGone, refused('relet:L-a@10/10'), { type: 'primary-lease', lease: { node: 'b', epoch: 4 }, modRevision: 12 }], [
    { type: 'stop-serving', reason: 'lost the primary lease of epoch 3 to b at epoch 4' },
  ]],
  ['6', '... refused on a record it had not seen yet: tried again on the new one', primary(record()), [leaseGone, refused('relet:L-a@10/10'), { type: 'record', record: record({}, { sizeBytes: 20 * GiB }), modRevision: 11 }], [
    expect.objectContaining({ txn: 'relet:L-a@10/11' }),
  ]],
  ['4', '... a member failed meanwhile: its removal waits for the key (no write is acknowledged without it), then goes', primary(record()), [leaseGone, failed('b'), committed('relet:L-a@10/10', 11)], [
    { txn: 'out:b@10', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['4', '... a removal refused for want of the key does not stop it: sent again once the key is back', primary(record()), [failed('b'), leaseGone, refused('out:b@10'), committed('relet:L-a@10/10', 11)], [
    { txn: 'out:b@10#2', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['4', '... a removal judged before the key was relet, its refusal heard after: sent again, it does not stop', primary(record()), [failed('b'), leaseGone, committed('relet:L-a@10/10', 11), refused('out:b@10')], [
    { txn: 'out:b@10#2', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['4', '... and that send refused too, on the view it holds: stops', primary(record()), [failed('b'), leaseGone, committed('relet:L-a@10/10', 11), refused('out:b@10'), refused('out:b@10#2')], [
    { type: 'stop-serving', reason: expect.stringMatching(/refused "out b": this node may no longer hold the primary lease/) },
    { txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] },
  ]],
  ['6', 'stopped while a relet was on its way, which then commits: the key it put back is deleted, or no member could ever take over', primary(record()), [
    leaseGone,
    { type: 'serve-failed', epoch: 3, reason: 'EIO' },
    committed('relet:L-a@10/10', 11),
    { type: 'primary-lease', lease: { node: 'a', epoch: 3 }, modRevision: 11 },
  ], [{ txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] }]],
  ['6', 'a key of its own at an epoch it does not serve (of an earlier life, say): deleted, if still that one, rather than left to lapse', follower('a', { ...record(), primary: 'b', epoch: 4 }), [
    { type: 'primary-lease', lease: { node: 'a', epoch: 3 }, modRevision: 11 },
  ], [{ txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] }]],
  ['6', 'its node lease renewed while its primary lease key still stands on the old one: the key is moved onto the new one', primary(record()), [{ type: 'node-lease', leaseId: null }, { type: 'node-lease', leaseId: 'L-a2' }], [
    {
      txn: 'relet:L-a2@10/10',
      delayMs: undefined,
      puts: [{ type: 'put', key: 'volume-leases/pvc', value: leaseValue({ node: 'a', epoch: 3 }), lease: 'L-a2' }],
    },
  ]],
  ['5', 'its promotion given up as the primary put its lease back: once that lease is gone (its node died), it tries again on the same record', follower('b', record(), ['a']), [
    leaseGone,
    { type: 'primary-lease', lease: { node: 'a', epoch: 3 }, modRevision: 11 },
    { type: 'primary-lease', lease: null, modRevision: 12 },
  ], [{ txn: 'promote@4', delayMs: 0, puts: expect.anything() }]],
  ['5', 'a node that has just got its lease back after an outage gives the primary time to put its lease back before it takes over', follower('b', record(), ['a']), [{ type: 'node-lease', leaseId: null }, { type: 'node-lease', leaseId: 'L-b2' }, leaseGone], [
    { txn: 'promote@4', delayMs: DEFAULT_BRAIN_CONFIG.rejoinGraceMs, puts: expect.anything() },
  ]],
  ['5', '... not past that grace', follower('b', record(), ['a']), [{ type: 'node-lease', leaseId: null }, { type: 'node-lease', leaseId: 'L-b2' }, [leaseGone, T0 + DEFAULT_BRAIN_CONFIG.rejoinGraceMs]], [
    { txn: 'promote@4', delayMs: 0, puts: expect.anything() },
  ]],
  ['4', 'a member failed: taken out by a transaction conditioned on the lease, the epoch and the record read', primary(record()), [failed('b')], [
    { txn: 'out:b@10', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['4', 'the removal refused: stops (the write is never acknowledged) and gives the lease back', primary(record()), [failed('b'), refused('out:b@10')], [
    { type: 'stop-serving', reason: expect.stringMatching(/refused "out b": this node may no longer hold the primary lease/) },
    { txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] },
  ]],
  ['4', 'the removal committed, the replica\'s node down: nothing more until it is back, or down past the grace period', primary(record(), ['b']), [failed('b'), committed('out:b@10')], [{ type: 'wake', atMs: T0 + TIMEOUT }]],
  ['6', 'the removal committed, the replica\'s node up: a resync at once', primary(record()), [failed('b'), committed('out:b@10')], [
    { txn: 'resync:b@11', delayMs: undefined, puts: [record({ b: { state: 'resyncing', lastEpoch: 3 } })] },
  ]],
  ['4', 'a replica already out fails again: nothing', primary(record({ b: { state: 'out', lastEpoch: 3 } }), ['b']), [failed('b')], []],
  ['4', 'a follower leaves failures to the primary', follower('b', record()), [failed('c')], []],
  ['4', 'two failures: one transaction at a time, the second on the record the first made', primary(record()), [failed('b'), failed('c'), committed('out:b@10')], [
    { txn: 'out:c@11', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3 }, c: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['3', 'a revert reached a copy, or failed on it half done: out as diverged, so that only a full copy brings it back', primary(record()), [diverged('b')], [
    { txn: 'out:b@10', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3, diverged: true } })] },
  ]],
  ['3', '... even when it was out already (a delta would miss what the revert changed)', primary(record({ b: { state: 'out', lastEpoch: 3 } }), ['b']), [diverged('b')], [
    { txn: 'out:b@10', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3, diverged: true } })] },
  ]],
  ['3', '... even when its plain out (a failure) waits behind another change: it goes out as diverged', primary(record()), [failed('c'), failed('b'), diverged('b'), committed('out:c@10')], [
    { txn: 'out:b@11', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3, diverged: true }, c: { state: 'out', lastEpoch: 3 } })] },
  ]],
  ['3', '... or is on its way to the store: diverged follows it', primary(record()), [failed('b'), diverged('b'), committed('out:b@10')], [
    { txn: 'out:b@11', delayMs: undefined, puts: [record({ b: { state: 'out', lastEpoch: 3, diverged: true } })] },
  ]],
  ['3', '... and a full resync when it is back', primary(record({ b: { state: 'out', lastEpoch: 3 } }), ['b']), [diverged('b'), committed('out:b@10'), { type: 'nodes', nodes: nodes() }, committed('resync:b@11', 12)], [
    { type: 'resync', replica: 'b', kind: 'full' },
  ]],
  ['6', 'a replica back, out since this epoch: marked resyncing, then a delta resync', primary(record({ b: { state: 'out', lastEpoch: 3 } }), ['b']), [{ type: 'nodes', nodes: nodes() }, committed('resync:b@10')], [
    { type: 'resync', replica: 'b', kind: 'delta' },
  ]],
  ['6', 'a replica back, out since an older epoch (another primary): a delta resync, from the absence log', primary(record({ b: { state: 'out', lastEpoch: 2 } }), ['b']), [{ type: 'nodes', nodes: nodes() }, committed('resync:b@10')], [
    { type: 'resync', replica: 'b', kind: 'delta' },
  ]],
  ['6', 'a replica back that may hold writes the others lack (an old primary): a full resync', primary(record({ b: { state: 'out', lastEpoch: 2, diverged: true } }), ['b']), [{ type: 'nodes', nodes: nodes() }, committed('resync:b@10')], [
    { type: 'resync', replica: 'b', kind: 'full' },
  ]],
  ['6', 'resync finished: back in the in-sync set', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [{ type: 'resync-finished', replica: 'b' }], [
    { txn: 'in-sync:b@10', delayMs: undefined, puts: [record()] },
  ]],
  ['6', 'resync failed: out again, retried later, not at once', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [failed('b'), committed('out:b@10')], [
    { type: 'wake', atMs: T0 + DEFAULT_BRAIN_CONFIG.resyncRetryMs },
  ]],
  ['6', '... and retried when that time comes, with a wake for when failing resyncs make it replaced', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + DEFAULT_BRAIN_CONFIG.resyncRetryMs]], [
    { type: 'wake', atMs: T0 + TIMEOUT },
    { txn: 'resync:b@11', delayMs: undefined, puts: [record({ b: { state: 'resyncing', lastEpoch: 3 } })] },
  ]],
  ['7', 'resyncs failing past the grace period, the node up (its disk failing or full): a new copy elsewhere', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT]], [
    { txn: 'replace:b@11', delayMs: undefined, puts: [record({ b: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' } })] },
  ]],
  ['7', "resyncs failing past the grace period for the primary's own copy (a block no peer could give): retried, never replaced", primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [
    { type: 'replica-failed', replica: 'b', reason: "resync failed: this node's own copy fails its checksum", notItsFault: true }, committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT],
  ], [
    { txn: 'resync:b@11', delayMs: undefined, puts: [record({ b: { state: 'resyncing', lastEpoch: 3 } })] },
  ]],
  ['7', '... with no node to put a new copy on: degraded, and why, and its resyncs go on (its disk may recover)', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } }), ['d', 'e']), [failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT]], [
    { type: 'report', health: 'degraded', reason: expect.stringMatching(/cannot replace the copy on b \(its resyncs have failed for over 600 s\)/) },
    { txn: 'resync:b@11', delayMs: undefined, puts: [record({ b: { state: 'resyncing', lastEpoch: 3 } })] },
  ]],
  ['7', 'a resync that ran a whole grace period before it lost its connection (a blip in a long copy) starts the clock afresh: retried, not replaced', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [
    failed('b'), committed('out:b@10'),
    [{ type: 'tick' }, T0 + RETRY], committed('resync:b@11', 12),
    [{ type: 'replica-failed', replica: 'b', reason: 'resync failed: connection reset', ranMs: TIMEOUT }, T0 + RETRY + TIMEOUT], committed('out:b@12', 13),
    [{ type: 'tick' }, T0 + 2 * RETRY + TIMEOUT],
  ], [
    { type: 'wake', atMs: T0 + RETRY + 2 * TIMEOUT },
    { txn: 'resync:b@13', delayMs: undefined, puts: [record({ b: { state: 'resyncing', lastEpoch: 3 } })] },
  ]],
  ['7', '... one that lost it sooner keeps the clock (so does one the copy failed itself, which carries no ranMs): replaced at the deadline', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [
    failed('b'), committed('out:b@10'),
    [{ type: 'tick' }, T0 + RETRY], committed('resync:b@11', 12),
    [{ type: 'replica-failed', replica: 'b', reason: 'resync failed: connection reset', ranMs: TIMEOUT - RETRY - 1 }, T0 + TIMEOUT - 1], committed('out:b@12', 13),
    [{ type: 'tick' }, T0 + TIMEOUT],
  ], [
    { txn: 'replace:b@13', delayMs: undefined, puts: [record({ b: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' } })] },
  ]],
  ['7', 'a resync that ends well starts the clock afresh: failing again later, it is not replaced at the first deadline', primary(record({ b: { state: 'resyncing', lastEpoch: 3 } })), [
    failed('b'), committed('out:b@10'),
    [{ type: 'tick' }, T0 + RETRY], committed('resync:b@11', 12), [{ type: 'resync-finished', replica: 'b' }, T0 + RETRY], committed('in-sync:b@12', 13),
    [failed('b'), T0 + TIMEOUT - 1000], committed('out:b@13', 14), committed('resync:b@14', 15),
    [failed('b'), T0 + TIMEOUT - 1000], committed('out:b@15', 16),
    [{ type: 'tick' }, T0 + TIMEOUT],
  ], []],
  ['4', 'its own copy failed a change the others took: takes its copy out, as diverged, conditioned on its lease', primary(record()), [localFailed], [
    { txn: 'out:a@10', delayMs: undefined, puts: [record({ a: { state: 'out', lastEpoch: 3, diverged: true } })] },
  ]],
  ['4', '... committed: stops and gives the lease back, so that a member takes over at once', primary(record()), [localFailed, committed('out:a@10')], [
    { type: 'stop-serving', reason: 'handed over: its own copy failed a request the others could serve: pool ssd is full' },
    { txn: 'release@3', delayMs: undefined, puts: [{ type: 'delete', key: 'volume-leases/pvc' }] },
  ]],
  ['1', '... and, out, it does not take over again', follower('a', record({ a: { state: 'out', lastEpoch: 3, diverged: true } })), [leaseGone], []],
  ['4', 'its own copy failed with no other member in the set: serves on (the change fails), degraded, and why', primary(record({ b: { state: 'out', lastEpoch: 3 }, c: { state: 'out', lastEpoch: 3 } })), [localFailed], [
    { type: 'report', health: 'degraded', reason: 'volume pvc: its own copy failed a request the others could serve: pool ssd is full; no other copy is in sync and up to take over' },
  ]],
  ['4', "... nor with the other member's node down (it could not take over: the volume would have no primary)", primary(record({ c: { state: 'out', lastEpoch: 3 } }), ['b']), [localFailed], [
    { type: 'report', health: 'degraded', reason: 'volume pvc: its own copy failed a request the others could serve: pool ssd is full; no other copy is in sync and up to take over' },
  ]],
  ['4', 'a follower leaves it be', follower('b', record()), [localFailed], []],
  ['7', 'a replica node goes down, its copy out: a wake for the end of the grace period', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, failed('b'), committed('out:b@10')], [{ type: 'wake', atMs: T0 + TIMEOUT }]],
  // It takes every write, or leaves the set at the first it misses: its node lost the store only (the runner checks it).
  ['7', 'a copy still in sync on a node down past the grace period: not replaced', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, [{ type: 'tick' }, T0 + TIMEOUT]], []],
  ['7', 'a copy kept in sync on a node listed down, out later: its grace period counts from then', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, [failed('b'), T0 + TIMEOUT], [committed('out:b@10'), T0 + TIMEOUT]], [{ type: 'wake', atMs: T0 + 2 * TIMEOUT }]],
  ['7', 'down past the grace period: a new copy on a node placement picks among those holding none', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT]], [
    { txn: 'replace:b@11', delayMs: undefined, puts: [record({ b: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' } })] },
  ]],
  ['7', 'two copies down past the grace period: each replaced, on a node of its own', primary(record(), ['b', 'c']), [failed('b'), failed('c'), committed('out:b@10'), committed('out:c@11', 12), [{ type: 'tick' }, T0 + TIMEOUT], committed('replace:b@12', 13)], [
    { type: 'resync', replica: 'd', kind: 'full' },
    { txn: 'replace:c@13', delayMs: undefined, puts: [record({ b: { state: 'failed' }, c: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' }, e: { state: 'resyncing', lastEpoch: 0, replaces: 'c' } })] },
  ]],
  ['7', 'a replacement goes to a zone without a copy, before a roomier node in a zone with one', primary(
    record({}, { replicas: [{ node: 'a', state: 'in-sync' }, { node: 'b', state: 'in-sync' }] })), [
    [{ type: 'nodes', nodes: nodes('b').map((n) => ({ ...n, zone: { a: 'z1', b: 'z2', c: 'z3', d: 'z1', e: 'z2' }[n.id], up: n.id !== 'b' && n.id !== 'c' })) }, T0],
    failed('b'), committed('out:b@10'),
    [{ type: 'tick' }, T0 + TIMEOUT],
  ], [
    // d (zone z1, beside a) has more room than e (zone z2, where b was): e.
    { txn: 'replace:b@11', delayMs: undefined, puts: [{ ...record(), replicas: [{ node: 'a', state: 'in-sync' }, { node: 'b', state: 'failed' }, { node: 'e', state: 'resyncing', lastEpoch: 0, replaces: 'b' }] }] },
  ]],
  ['7', 'two copies down together in a zoned cluster: each replacement to a zone without a copy, on nodes of their own', primary(record()), [
    // a, b, c in zones z1, z2, z3; spares d (z2, roomiest) and e (z3). b and c go: d takes z2, e z3.
    [{ type: 'nodes', nodes: nodes('b', 'c').map((n) => ({ ...n, zone: { a: 'z1', b: 'z2', c: 'z3', d: 'z2', e: 'z3' }[n.id] })) }, T0],
    failed('b'), failed('c'), committed('out:b@10'), committed('out:c@11', 12),
    [{ type: 'tick' }, T0 + TIMEOUT], committed('replace:b@12', 13),
  ], [
    { type: 'resync', replica: 'd', kind: 'full' },
    { txn: 'replace:c@13', delayMs: undefined, puts: [record({ b: { state: 'failed' }, c: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' }, e: { state: 'resyncing', lastEpoch: 0, replaces: 'c' } })] },
  ]],
  ['7', '... committed: a full copy to it', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT], committed('replace:b@11', 12)], [
    { type: 'resync', replica: 'd', kind: 'full' },
  ]],
  ['7', 'the new copy in sync: the old one is dropped, and left for its node to delete', primary(record({ b: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' } }), ['b']), [{ type: 'resync-finished', replica: 'd' }], [
    { txn: 'in-sync:d@10', delayMs: undefined, puts: [
      { ...record(), replicas: ['a', 'c', 'd'].map((node) => ({ node, state: 'in-sync' })) },
      { type: 'put', key: 'leftovers/b/pvc', value: JSON.stringify({ reason: 'replaced by the copy on d', replaced: true }) },
    ] },
  ]],
  ['7', 'a replacement replaced in turn: its record still names the copy it replaced', primary(record({ b: { state: 'failed' }, d: { state: 'resyncing', lastEpoch: 0, replaces: 'b' } }), ['b', 'd']), [{ type: 'replace', replica: 'd' }], [
    { txn: 'replace:d@10', delayMs: undefined, puts: [record({ b: { state: 'failed' }, d: { state: 'failed', replaces: 'b' }, e: { state: 'resyncing', lastEpoch: 0, replaces: 'd' } })] },
  ]],
  ['7', '... its replacement in sync: both copies it stands for are dropped, each left for its node to delete', primary(record({ b: { state: 'failed' }, d: { state: 'failed', replaces: 'b' }, e: { state: 'resyncing', lastEpoch: 0, replaces: 'd' } }), ['b', 'd']), [{ type: 'resync-finished', replica: 'e' }], [
    { txn: 'in-sync:e@10', delayMs: undefined, puts: [
      { ...record(), replicas: ['a', 'c', 'e'].map((node) => ({ node, state: 'in-sync' })) },
      { type: 'put', key: 'leftovers/d/pvc', value: JSON.stringify({ reason: 'replaced by the copy on e', replaced: true }) },
      { type: 'put', key: 'leftovers/b/pvc', value: JSON.stringify({ reason: 'replaced by the copy on e', replaced: true }) },
    ] },
  ]],
  ['7', 'back up within the grace period: resynced, not replaced', primary(record()), [{ type: 'nodes', nodes: nodes('b') }, failed('b'), committed('out:b@10'), [{ type: 'nodes', nodes: nodes() }, T0 + TIMEOUT / 2]], [
    { txn: 'resync:b@11', delayMs: undefined, puts: expect.anything() },
  ]],
  ['7', 'no node to place a new copy on: degraded, and why', primary(record(), ['b', 'd', 'e']), [failed('b'), committed('out:b@10'), [{ type: 'tick' }, T0 + TIMEOUT]], [
    { type: 'report', health: 'degraded', reason: expect.stringMatching(/cannot replace the copy on b .*: 1 replicas need 1 nodes .*; 0 qualify \(d is down; e is down\)/) },
  ]],
  ['7', 'an operator asks for a replacement', primary(record()), [{ type: 'replace', replica: 'c' }], [{ txn: 'replace:c@10', delayMs: undefined, puts: expect.anything() }]],
])('rule %s: %s', (_rule, _name, initial, events, expected) => {
  const { state, actions, last } = run(initial, events);

  test('acts', () => expect(summary(actions)).toEqual(expected));

  test('the same event again asks for nothing', () => expect(step(state, ...last).actions).toEqual([]));
});

describe('rule 5: who takes over', () => {
  test('the rank the table above assumes for "pvc": a, b, c', () => {
    expect(promotionRank('pvc', ['c', 'a', 'b'])).toEqual(['a', 'b', 'c']);
  });

  // All used to go to the next node in their records (the same for most volumes), which then
  // raised and served every one of them.
  test('the volumes of a node that dies spread over the others, and exactly one of them goes first for each', () => {
    const first = { b: 0, c: 0 };
    for (let n = 0; n < 60; n++) {
      const rec = record({}, { name: `v${n}` });
      const delays = (['b', 'c'] as const).map((self) => {
        const [action] = run(follower(self, rec, ['a']), [leaseGone]).actions;
        return action.type === 'txn' ? action.delayMs : undefined;
      });
      expect([...delays].sort()).toEqual([0, DEFAULT_BRAIN_CONFIG.promotionStepMs]);
      first[delays[0] === 0 ? 'b' : 'c']++;
    }
    expect(first.b).toBeGreaterThanOrEqual(20);
    expect(first.c).toBeGreaterThanOrEqual(20);
  });
});

describe('on a real store', () => {
  const current = freshEmbeddedStore();
  let store: EmbeddedStore;
  beforeEach(() => (store = current()));

  test('rule 5: in-sync replicas racing to take over: the CAS picks exactly one winner; the loser follows the new record', async () => {
    const readRevision = await store.put(volumeKey('pvc'), JSON.stringify(record()));
    const leases = { b: await store.grantLease(10), c: await store.grantLease(10) };
    const brains = (['b', 'c'] as const).map((self) => {
      const state: BrainState = { ...follower(self, record(), ['a']), nodeLease: leases[self].id, recordRevision: readRevision, leaseRevision: readRevision };
      return step(state, { ...leaseGone, modRevision: readRevision }, T0);
    });
    const txns = brains.map((b) => b.actions[0] as BrainAction & { type: 'txn' });
    expect(txns.map((t) => t.delayMs)).toEqual([0, DEFAULT_BRAIN_CONFIG.promotionStepMs]);

    // Both transactions reach the store, the better-ranked first: one commits.
    const results: BrainEvent[] = [];
    for (const t of txns) results.push({ type: 'txn-result', id: t.id, committed: (await store.txn(t.txn)).succeeded, revision: await store.revision() });
    expect(results.map((r) => (r as BrainEvent & { type: 'txn-result' }).committed)).toEqual([true, false]);
    const stored = await store.get(volumeKey('pvc'));
    const promotedRecord = JSON.parse(stored!.value) as VolumeRecord;
    expect([promotedRecord.primary, promotedRecord.epoch]).toEqual(['b', 4]);
    const lease = await store.get(volumeLeaseKey('pvc'));
    expect([lease?.value, lease?.lease]).toEqual([leaseValue({ node: 'b', epoch: 4 }), leases.b.id]);

    const recordEvent: BrainEvent = { type: 'record', record: promotedRecord, modRevision: stored!.modRevision };
    const leaseEvent: BrainEvent = { type: 'primary-lease', lease: { node: 'b', epoch: 4 }, modRevision: lease!.modRevision };
    const after = brains.map((b, i) => run(b.state, [results[i], recordEvent, leaseEvent]));
    expect(after.map((a) => a.state.role)).toEqual(['raising', 'follower']);
    expect(run(after[1].state, [{ type: 'epochs-raised', epoch: 4, unreachable: [] }]).actions).toEqual([]);

    // The winner's node lease lapses (its node died): the primary lease goes with it.
    await leases.b.revoke();
    expect(await store.get(volumeLeaseKey('pvc'))).toBeUndefined();
  });

  /** A runner of volume "pvc" on node a, on the store as txnOf wraps its transactions; a's own copy raises or fails as told. */
  function runnerOn(
    txnOf: (txn: Txn) => Promise<TxnResult>,
    raiseLocalEpoch: RunnerContext['raiseLocalEpoch'],
    logger = pino({ level: 'silent' }),
    config = DEFAULT_BRAIN_CONFIG,
    copy: Partial<Pick<RunnerContext, 'localCopy' | 'localFence'>> = {},
    readOf: ClusterStore['read'] = (key) => store.read(key),
  ): VolumeRunner {
    const wrapped = withCalls(store, { txn: txnOf, read: readOf });
    const notUsed = () => Promise.reject(new Error('not used by this test'));
    const context = {
      self: 'a',
      store: wrapped,
      raiseLocalEpoch,
      localCopy: () => undefined,
      localFence: () => {
        throw new Error('not used by this test');
      },
      nodeAddress: () => undefined, // the other copies cannot be reached: their epoch is not raised
      createCopy: notUsed,
      absenceLog: () => undefined,
      activityLog: () => undefined,
      activityOf: notUsed,
      peerActivity: () => undefined,
      trackActivity: notUsed,
      blockChecksums: notUsed,
      trackAbsence: notUsed,
      controlCopy: notUsed,
      settleCopyControls: notUsed,
      copySnapshotNames: notUsed,
      config,
      logger,
      ...copy,
    } satisfies RunnerContext;
    return new VolumeRunner('pvc', context);
  }

  /** Puts rec in the store and has runner (on a's new node lease) see it with no primary lease: it takes over. */
  async function takeOver(runner: VolumeRunner, rec: VolumeRecord): Promise<void> {
    const revision = await store.put(volumeKey('pvc'), JSON.stringify(rec));
    runner.dispatch({ type: 'nodes', nodes: nodes() });
    runner.dispatch({ type: 'node-lease', leaseId: (await store.grantLease(30)).id });
    runner.dispatch({ type: 'record', record: rec, modRevision: revision });
    runner.dispatch({ type: 'primary-lease', lease: null, modRevision: revision });
  }

  async function until(done: () => Promise<boolean>): Promise<void> {
    for (const deadline = Date.now() + 5000; Date.now() < deadline && !(await done()); ) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  test('the runner: a release of the primary lease that the store did not take is sent again: while the node lives, no other copy could take over', async () => {
    let releasesMissed = 0;
    const isRelease = (txn: Txn) => txn.success.some((op) => op.type === 'delete' && op.key === volumeLeaseKey('pvc'));
    const runner = runnerOn(
      (txn) => (isRelease(txn) && releasesMissed++ === 0 ? Promise.reject(new StoreUnavailableError('etcd did not answer')) : store.txn(txn)),
      () => Promise.reject(new Error('EIO: its disk failed')), // its own copy cannot take the new epoch: it gives the lease back
    );
    try {
      await takeOver(runner, record({}, { replicas: [{ node: 'a', state: 'in-sync' }] }));
      await until(async () => releasesMissed > 0 && (await store.get(volumeLeaseKey('pvc'))) === undefined);
      expect(releasesMissed).toBe(2); // missed once, then taken
      expect(await store.get(volumeLeaseKey('pvc'))).toBeUndefined();
      expect(JSON.parse((await store.get(volumeKey('pvc')))!.value)).toMatchObject({ primary: 'a', epoch: 4 });
    } finally {
      runner.close();
    }
  });

  test("the runner: its own copy's epoch not raised within the limit (a hung disk), it gives the primary lease back", async () => {
    const lines: string[] = [];
    const runner = runnerOn(
      (txn) => store.txn(txn),
      () => new Promise<void>(() => undefined), // the disk never answers
      pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
      { ...DEFAULT_BRAIN_CONFIG, ownRaiseLimitMs: 300 },
    );
    try {
      await takeOver(runner, record({}, { replicas: [{ node: 'a', state: 'in-sync' }, { node: 'b', state: 'in-sync' }] }));
      await until(async () => JSON.parse((await store.get(volumeKey('pvc')))!.value).epoch === 4 && (await store.get(volumeLeaseKey('pvc'))) === undefined);
      expect(JSON.parse((await store.get(volumeKey('pvc')))!.value)).toMatchObject({ primary: 'a', epoch: 4 });
      expect(await store.get(volumeLeaseKey('pvc'))).toBeUndefined(); // b may take it now
      expect(lines.some((l) => l.includes('its own copy did not take epoch 4 within 300 ms'))).toBe(true);
    } finally {
      runner.close();
    }
  });

  test('the runner: a change refused as the primary lease key was rewritten (a relet), the read of the key failing once: read again and sent again, the primary goes on', async () => {
    const lines: string[] = [];
    let refused = 0;
    let readsFailed = 0;
    const isChange = (txn: Txn) => txn.success.length === 1 && txn.success[0].type === 'put' && txn.success[0].key === volumeKey('pvc');
    const runner = runnerOn(
      async (txn) => {
        if (!isChange(txn) || refused++ > 0) return store.txn(txn);
        // Judged before the primary put its key back after an outage: the key rewritten since, the change refused.
        const key = (await store.get(volumeLeaseKey('pvc')))!;
        return { succeeded: false, revision: await store.put(volumeLeaseKey('pvc'), key.value) };
      },
      () => Promise.resolve(),
      pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
      DEFAULT_BRAIN_CONFIG,
      {},
      async (key) => {
        if (key === volumeLeaseKey('pvc') && readsFailed++ === 0) throw new StoreUnavailableError('etcdserver: leader changed');
        return store.read(key);
      },
    );
    try {
      // b and c cannot be raised: they are taken out (a change each), then it serves (and, with no
      // copy of its own in this test, fails to: that is past the point checked here).
      await takeOver(runner, record());
      await until(async () => lines.some((l) => l.includes('could not serve as primary') || l.includes('the store refused')));
      expect([refused > 1, readsFailed > 1]).toEqual([true, true]);
      expect(lines.filter((l) => l.includes('the store refused'))).toEqual([]);
      const stored = JSON.parse((await store.get(volumeKey('pvc')))!.value) as VolumeRecord;
      expect([stored.epoch, inSyncNodes(stored)]).toEqual([4, ['a']]);
    } finally {
      runner.close();
    }
  });

  test('the runner: a change the store committed but whose answer was lost counts as committed: the primary goes on', async () => {
    const lines: string[] = [];
    let answersLost = 0;
    const isChange = (txn: Txn) => txn.success.length === 1 && txn.success[0].type === 'put' && txn.success[0].key === volumeKey('pvc');
    const runner = runnerOn(
      async (txn) => {
        const result = await store.txn(txn);
        if (isChange(txn) && answersLost++ === 0) throw new StoreUnavailableError('the answer did not come back');
        return result;
      },
      () => Promise.resolve(),
      pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
    );
    try {
      // b and c cannot be raised: they are taken out (a change each), then it serves (and, with no
      // copy of its own in this test, fails to: that is past the point checked here).
      await takeOver(runner, record());
      await until(async () => lines.some((l) => l.includes('could not serve as primary') || l.includes('refused')));
      expect(answersLost).toBeGreaterThan(0);
      const stored = JSON.parse((await store.get(volumeKey('pvc')))!.value) as VolumeRecord;
      expect([stored.epoch, inSyncNodes(stored)]).toEqual([4, ['a']]);
      expect(lines.filter((l) => l.includes('could not serve as primary'))).toHaveLength(1);
    } finally {
      runner.close();
    }
  });

  test('the runner: once it serves again at a newer epoch, the in-sync set of its earlier serving changes nothing', async () => {
    // A device outlives its serving by a little (closed, still ending a resync or a write). Its
    // in-sync set used to be the runner itself, so a resync of the earlier serving could put a copy
    // in sync that the current one was still copying to. Here the earlier set's calls are refused.
    const { engine, local } = await openPrimaryVolume(makeTempDir('weft-runner-'), 'pvc', 8 * MiB);
    let localEpoch = 3;
    const fence = new EpochFence('pvc', () => localEpoch);
    const raise = async (_volume: string, epoch: number) => void (localEpoch = epoch);
    const runner = runnerOn((txn) => store.txn(txn), raise, undefined, undefined, { localCopy: () => local, localFence: () => fence });
    const at = (epoch: number) => (runner as unknown as { inSyncSetAt(epoch: number): InSyncSet }).inSyncSetAt(epoch);
    const stored = async () => JSON.parse((await store.get(volumeKey('pvc')))!.value) as VolumeRecord;
    try {
      await takeOver(runner, record({}, { replicas: [{ node: 'a', state: 'in-sync' }], sizeBytes: 8 * MiB }));
      await until(async () => runner.replication() !== undefined);
      const earlier = at(4);
      // Fenced, it stops; once its lease is gone, it takes the volume again at epoch 5.
      runner.dispatch({ type: 'fenced' });
      await store.delete(volumeLeaseKey('pvc'));
      runner.dispatch({ type: 'primary-lease', lease: null, modRevision: await store.revision() });
      await until(async () => (await stored()).epoch === 5 && runner.replication() !== undefined);
      expect(runner.replication()).toBeDefined();

      await expect(earlier.remove('a', 'a write of the earlier serving failed')).rejects.toThrow(/no longer serves it at epoch 4/);
      await expect(earlier.add('a')).rejects.toThrow(/no longer serves it at epoch 4/);
      expect(await stored()).toMatchObject({ primary: 'a', epoch: 5, replicas: [{ node: 'a', state: 'in-sync' }] });
      expect(runner.replication()).toBeDefined();
    } finally {
      runner.close();
      await engine.close();
      await cleanupAll();
    }
  });
});
