// Control operations a primary gave up waiting for, on both sides.
//
// A primary that gets no answer to a control operation on a copy (a snapshot, resize, revert or
// snapshot delete) in time moves on: a revert that timed out takes the copy out as diverged, to be
// resynced. But the copy may still run the operation: the call may wait there behind other control
// operations, or unread in a socket buffer while its node is stalled. Run after the primary has
// moved on, it changes the copy under what came since: a late revert would throw away what a resync
// had copied meanwhile, while the copy counts as in sync again.
//
// So each operation a primary sends carries an id, and the primary remembers those that got no
// answer (CopyControls). Before it sends that copy anything else (another control operation, a
// resync), it settles them there (ControlLedger): the ones under way are waited for, and the ones
// not yet arrived are refused when they come. Everything the primary does to the copy from then on
// comes after them, or without them.

import { NoAnswerError, WeftError, type ErrorKind } from '../errors';
import { KeyedTurns } from '../keyed-turns';
import type { CopyOperation } from './replication-layer';

/** How long an id settled before its operation arrived is remembered (a call lost on the way never comes). */
const ABANDONED_KEEP_MS = 60 * 60 * 1000;

/** The copy's side: the operations under way, by id, and the ids settled before their operation came. */
export class ControlLedger {
  private readonly running = new Map<string, Promise<unknown>>();
  private readonly abandoned = new Map<string, number>();

  /** Runs the operation unless its id was settled already; while it runs, a settle of its id waits for it. */
  run<T>(id: string | undefined, operation: () => Promise<T>): Promise<T> {
    if (id === undefined) return operation();
    if (this.abandoned.delete(id)) {
      return Promise.reject(new WeftError('FAILED_PRECONDITION', `control operation ${id} came after its primary had given up on it: not run`));
    }
    const running = operation();
    this.running.set(id, running);
    const done = () => void this.running.delete(id);
    running.then(done, done);
    return running;
  }

  /** Resolves once none of the ids' operations runs here, nor ever will. */
  async settle(ids: readonly string[]): Promise<void> {
    const now = Date.now();
    for (const [id, at] of this.abandoned) if (now - at > ABANDONED_KEEP_MS) this.abandoned.delete(id);
    const waits: Promise<unknown>[] = [];
    for (const id of ids) {
      const running = this.running.get(id);
      if (running) waits.push(running.catch(() => undefined));
      else this.abandoned.set(id, now);
    }
    await Promise.all(waits);
  }
}

/** Refusals a copy gives itself: the operation ended there (never ran, or ran to its end), and will not run later. */
const ANSWERS = new Set<ErrorKind>(['NOT_FOUND', 'ALREADY_EXISTS', 'INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION']);

function answered(err: unknown): boolean {
  return err instanceof WeftError && !(err instanceof NoAnswerError) && ANSWERS.has(err.kind);
}

/** The primary's side: sends a volume's control operations to its copies, settling first those that got no answer. */
export class CopyControls {
  private sent = 0;
  /** Per copy's node, the ids of operations sent there that got no answer (or failed on the way). */
  private readonly unanswered = new Map<string, Set<string>>();
  /** Per copy's node, a settle and the send it clears the way for, one pair at a time. */
  private readonly turns = new KeyedTurns();

  constructor(
    /** Unique to this primary's life (the ids must not repeat across primaries, nor across restarts). */
    private readonly idPrefix: string,
    private readonly send: (node: string, operation: CopyOperation, epoch: number) => Promise<void>,
    private readonly settleOn: (node: string, ids: string[]) => Promise<void>,
  ) {}

  /**
   * The operation on node's copy, once what was sent there before without an answer is settled. A
   * check that changes nothing gets no id. A failure other than the copy's own refusal leaves its id
   * to settle: a call that failed on the way may still have reached the copy.
   */
  apply(node: string, operation: CopyOperation, epoch: number): Promise<void> {
    return this.turns.run(node, async () => {
      await this.settledNow(node);
      if ('checkOnly' in operation && operation.checkOnly) return this.send(node, operation, epoch);
      const id = `${this.idPrefix}.${++this.sent}`;
      try {
        await this.send(node, { ...operation, id }, epoch);
      } catch (err) {
        if (!answered(err)) {
          let ids = this.unanswered.get(node);
          if (!ids) this.unanswered.set(node, (ids = new Set()));
          ids.add(id);
        }
        throw err;
      }
    });
  }

  /** Resolves once nothing sent to node without an answer can still change its copy; rejects if node cannot say so now. */
  settled(node: string): Promise<void> {
    return this.turns.run(node, () => this.settledNow(node));
  }

  private async settledNow(node: string): Promise<void> {
    const ids = this.unanswered.get(node);
    if (!ids || ids.size === 0) return;
    const settling = [...ids];
    try {
      await this.settleOn(node, settling);
    } catch (err) {
      throw new WeftError('UNAVAILABLE', `copy on node ${node} has not settled the control operations it gave no answer to (${(err as Error).message}): try again`);
    }
    for (const id of settling) ids.delete(id);
  }
}
