// A replicated volume's create is written down in the store before its first copy is made, so that
// one cut short (its node killed or cut from the store midway, or an undo that could not reach a
// node) never leaves copies that hold the name on their nodes for good, and that a node never
// mistakes a volume of its own for such a copy.
//
// - The intent (`creates/NAME`) names the create and the node that runs it, with that node's alive
//   key as it was then (membership.ts): while that key lives on unchanged, the create is under way,
//   and another create of the name is refused as such.
// - Each node marks its copy (`create-copies/NAME/NODE`) before it makes it, in a transaction that
//   holds only while the intent is this create's.
// - The record goes in one transaction with the intent and the marks, and only while the intent is
//   this create's.
// - A create that fails, or whose node is gone, is given up: in one transaction, its intent goes
//   and each marked copy becomes a leftover (leftovers.ts), which its node deletes. Its own node
//   gives it up when it fails (with the copies it knows were made, marked or not: a node of an
//   older version marks nothing); another create of the name, a create of a volume of a node's own
//   of that name, or any node when it joins the cluster, gives up one whose node is gone, or that
//   its own node no longer runs. A create given up can no longer record its volume, nor have a
//   copy marked.
// - Copies are marked only when the create asks for it (CreateCopyRequest.marked): a create run by a
//   node of an older version writes no intent, and its copies are made unmarked, as they were.

import { WeftError } from '../errors';
import { StoreUnavailableError, type ClusterStore, type KeyValue, type Txn } from './cluster-store';
import { ALIVE, NODES } from './membership';
import { leftoverKey, parseObject, type Leftover } from './volume-record';

export const CREATE_INTENTS = 'creates/';
const intentKey = (name: string) => `${CREATE_INTENTS}${name}`;
const markPrefix = (name: string) => `create-copies/${name}/`;
const markKey = (name: string, node: string) => `${markPrefix(name)}${node}`;

/** The intent's value. */
interface CreateIntent {
  createId: string;
  node: string;
  /** The createRevision of the node's alive key when it began: a new one is another life of the node. */
  aliveRevision: number;
}

/**
 * The intent a stored value holds; for a value no weftd writes (a hand edit), one of no node and no
 * create: never under way, so it is given up (deleted, its name free), and no copy is its.
 */
function intentOf(value: string): CreateIntent {
  const intent = parseObject(value);
  if (typeof intent?.createId === 'string' && typeof intent.node === 'string' && typeof intent.aliveRevision === 'number') return intent as unknown as CreateIntent;
  return { createId: '', node: '', aliveRevision: -1 };
}

/** A create under way on this node: its name, id, and its intent's value as written (compared as a string). */
export interface HeldIntent {
  name: string;
  createId: string;
  value: string;
}

/** How many times a look at the intent starts again when other nodes change it meanwhile. */
const LOOK_ATTEMPTS = 5;

/** What a node tells the intent functions about itself. */
export interface CreatingNode {
  id: string;
  /** Whether this process runs the create (by its id) now. */
  runs(createId: string): boolean;
  /** Told of a create of another life, or another node, given up on the way (the nodes of its copies). */
  onGivenUp(name: string, node: string, copies: string[]): void;
}

/** The store's answer to a begin was lost: the intent may be there, and is for the caller to settle (lost-create.ts). */
export class BeginOutcomeUnknownError extends StoreUnavailableError {
  constructor(readonly intent: HeldIntent, cause: Error) {
    super(`the cluster store did not answer whether the create of ${intent.name} was written down (${cause.message}): try again`);
    this.name = 'BeginOutcomeUnknownError';
  }
}

/**
 * Writes down a create of name by this node. One under way (on a node that is up, and on this
 * node: in this process): ABORTED. One that is not is given up first (its copies left to their
 * nodes). UNAVAILABLE while this node is not in the cluster (no alive key: its lease lapsed);
 * BeginOutcomeUnknownError if the store's answer to the write was lost.
 */
export async function beginCreate(store: ClusterStore, name: string, createId: string, self: CreatingNode): Promise<HeldIntent> {
  const alive = await store.get(ALIVE + self.id);
  if (!alive) throw new WeftError('UNAVAILABLE', `node ${self.id} is not in the cluster right now (its lease lapsed): try again, or ask another node`);
  const intent = { name, createId, value: JSON.stringify({ createId, node: self.id, aliveRevision: alive.createRevision } satisfies CreateIntent) };
  for (let attempt = 0; attempt < LOOK_ATTEMPTS; attempt++) {
    const running = await createUnderWay(store, name, self);
    if (running) throw underWay(name, running);
    let succeeded: boolean;
    try {
      ({ succeeded } = await store.txn({ compare: [{ key: intentKey(name), target: 'createRevision', op: '=', value: 0 }], success: [{ type: 'put', key: intentKey(name), value: intent.value }] }));
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw new BeginOutcomeUnknownError(intent, err);
      throw err;
    }
    if (succeeded) return intent;
  }
  throw new WeftError('ABORTED', `volume ${name}: other creates of the name kept changing it: try again`);
}

/**
 * The node of a create of name under way, if one is: on a node that is up (its alive key the one
 * it began with), and on this node, run by this process. One that is not is given up on the way.
 */
export async function createUnderWay(store: ClusterStore, name: string, self: CreatingNode): Promise<string | undefined> {
  for (let attempt = 0; attempt < LOOK_ATTEMPTS; attempt++) {
    const stored = await store.get(intentKey(name));
    if (!stored) return undefined;
    const other = intentOf(stored.value);
    if (await isUnderWay(store, other, self)) return other.node;
    const copies = await giveUpIntent(store, name, stored, []);
    if (copies) {
      self.onGivenUp(name, other.node, copies);
      return undefined;
    }
  }
  throw new WeftError('ABORTED', `volume ${name}: other creates of the name kept changing it: try again`);
}

/** This node's copy for the create: marked, while the intent is this create's; else refused. */
export async function markCopy(store: ClusterStore, name: string, createId: string, node: string): Promise<void> {
  const stored = await store.get(intentKey(name));
  if (!stored || intentOf(stored.value).createId !== createId) throw givenUp(name);
  // The intent is written again so that a give-up that listed the marks before this one tries again.
  const { succeeded } = await store.txn({
    compare: [{ key: intentKey(name), target: 'value', op: '=', value: stored.value }],
    success: [
      { type: 'put', key: markKey(name, node), value: createId },
      { type: 'put', key: intentKey(name), value: stored.value },
    ],
  });
  if (!succeeded) throw givenUp(name);
}

/** Takes the mark off this node's copy for the create, which it could not make after all. */
export async function unmarkCopy(store: ClusterStore, name: string, createId: string, node: string): Promise<void> {
  await store.txn({ compare: [{ key: markKey(name, node), target: 'value', op: '=', value: createId }], success: [{ type: 'delete', key: markKey(name, node) }] });
}

/** What the record's transaction also holds to and does: the intent is still this create's; it and the copies' marks go. */
export function recordedIntent(intent: HeldIntent, nodes: readonly string[]): Pick<Txn, 'compare' | 'success'> {
  return {
    compare: [{ key: intentKey(intent.name), target: 'value', op: '=', value: intent.value }],
    success: [{ type: 'delete', key: intentKey(intent.name) }, ...nodes.map((node) => ({ type: 'delete' as const, key: markKey(intent.name, node) }))],
  };
}

/**
 * Gives up the create if the intent is still its own: the nodes whose copies are now leftovers
 * (those marked, and made: the nodes that answered its copy's create); undefined if the intent is
 * another's or gone (a node that found the create abandoned gave it up).
 */
export async function giveUpCreate(store: ClusterStore, intent: HeldIntent, made: readonly string[]): Promise<string[] | undefined> {
  for (;;) {
    const stored = await store.get(intentKey(intent.name));
    if (stored?.value !== intent.value) return undefined;
    const nodes = await giveUpIntent(store, intent.name, stored, made);
    if (nodes) return nodes;
  }
}

/** Gives up every create that is not under way (createUnderWay): at a node's start and each new lease. */
export async function giveUpAbandonedCreates(store: ClusterStore, self: CreatingNode): Promise<void> {
  for (const stored of await store.list(CREATE_INTENTS)) await createUnderWay(store, stored.key.slice(CREATE_INTENTS.length), self);
}

/** Gives up every create that node began: it is being forgotten (down, and will not come back). */
export async function giveUpCreatesOf(store: ClusterStore, node: string): Promise<void> {
  for (const stored of await store.list(CREATE_INTENTS)) {
    if (intentOf(stored.value).node === node) await giveUpIntent(store, stored.key.slice(CREATE_INTENTS.length), stored, []);
  }
}

export const underWay = (name: string, node: string) => new WeftError('ABORTED', `a create of volume ${name} is under way on node ${node}: try again once it has ended`);

const givenUp = (name: string) => new WeftError('ABORTED', `the create of volume ${name} was given up (its node was out of the cluster store's reach for a while): try again`);

async function isUnderWay(store: ClusterStore, intent: CreateIntent, self: CreatingNode): Promise<boolean> {
  if (intent.node === self.id && !self.runs(intent.createId)) return false;
  const alive = await store.get(ALIVE + intent.node);
  return alive?.createRevision === intent.aliveRevision;
}

/**
 * The intent (as stored) goes, and each copy marked for it (or made: `made`) becomes a leftover, in
 * one transaction that holds only if nothing changed the intent since it was read (a mark made
 * meanwhile): the nodes with leftovers, or undefined if it did not hold. A node no longer in the
 * cluster (forgotten) gets none: nothing would ever delete the key.
 */
async function giveUpIntent(store: ClusterStore, name: string, stored: KeyValue, made: readonly string[]): Promise<string[] | undefined> {
  const { createId } = intentOf(stored.value);
  const marks = (await store.list(markPrefix(name))).filter((kv) => kv.value === createId);
  const registered = new Set((await store.list(NODES)).map((kv) => kv.key.slice(NODES.length)));
  const nodes = [...new Set([...marks.map((kv) => kv.key.slice(markPrefix(name).length)), ...made])].filter((node) => registered.has(node));
  // Its create's id: no record ever has it (a create given up never records its volume), so these
  // copies are never taken for a later volume's of the name (cluster-volumes.ts, dropLeftoverNow).
  const leftover = JSON.stringify({ reason: 'its create was cut short', createId } satisfies Leftover);
  const { succeeded } = await store.txn({
    compare: [{ key: intentKey(name), target: 'modRevision', op: '=', value: stored.modRevision }],
    success: [
      { type: 'delete', key: intentKey(name) },
      ...marks.map((kv) => ({ type: 'delete' as const, key: kv.key })),
      ...nodes.map((node) => ({ type: 'put' as const, key: leftoverKey(node, name), value: leftover })),
    ],
  });
  return succeeded ? nodes : undefined;
}
