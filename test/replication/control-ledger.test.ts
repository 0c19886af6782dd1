// A control operation a primary got no answer to must never change the copy after the primary has
// moved on (control-ledger.ts). A copy's ControlLedger, and a primary's CopyControls sending to it
// over a simulated link whose deliveries the test holds back and lets go at will: the operation
// arrives before the settle (it is waited for), after it (it is refused), or never.

import { failedPrecondition, NoAnswerError, WeftError } from '../../fabric/errors';
import { ControlLedger, CopyControls } from '../../fabric/replication/control-ledger';
import type { CopyOperation } from '../../fabric/replication/replication-layer';
import { withDeadline } from '../../fabric/deadline';

/** A link to one copy: each call is delivered when the test lets it go; the caller gives up after `patienceMs`. */
class HeldLink {
  readonly ledger = new ControlLedger();
  /** What the copy did, in order. */
  readonly applied: string[] = [];
  private held: (() => void)[] = [];
  holding = false;
  /** Operations that run on the copy wait for this before they finish (a slow disk). */
  slow?: Promise<void>;

  constructor(private readonly patienceMs = 50) {}

  send = (_node: string, operation: CopyOperation): Promise<void> => {
    const delivered = new Promise<void>((resolve, reject) => {
      const deliver = () =>
        this.ledger
          .run(operation.id, async () => {
            await this.slow;
            this.applied.push(describe(operation));
          })
          .then(resolve, reject);
      if (this.holding) this.held.push(deliver);
      else deliver();
    });
    return withDeadline(delivered, this.patienceMs, () => new Error('no answer'));
  };

  settle = (_node: string, ids: string[]): Promise<void> => {
    const delivered = new Promise<void>((resolve, reject) => {
      const deliver = () => this.ledger.settle(ids).then(resolve, reject);
      if (this.holding) this.held.push(deliver);
      else deliver();
    });
    return withDeadline(delivered, this.patienceMs, () => new Error('no answer'));
  };

  /** Delivers what was held, in the order it was sent. */
  letGo(): void {
    this.holding = false;
    for (const deliver of this.held.splice(0)) deliver();
  }
}

const describe = (operation: CopyOperation) => (operation.type === 'revert' ? `revert to ${operation.snapshot}` : operation.type === 'snapshot' ? `snapshot ${operation.name}` : operation.type);

async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

test('an operation that arrives after its primary settled it is refused: a late revert never lands', async () => {
  const link = new HeldLink();
  const controls = new CopyControls('p1', link.send, link.settle);
  link.holding = true;
  await expect(controls.apply('n2', { type: 'revert', snapshot: 's' }, 5)).rejects.toThrow('no answer');
  // The primary moves on: before it sends the copy anything else, it settles the revert there (this
  // call goes through; the revert is still on its way).
  link.holding = false;
  await controls.settled('n2');
  link.letGo(); // the revert arrives now, late
  await settleMicrotasks();
  expect(link.applied).toEqual([]);
  await controls.apply('n2', { type: 'snapshot', name: 't' }, 5);
  expect(link.applied).toEqual(['snapshot t']);
});

test('an operation under way when its primary settles it is waited for: whatever follows comes after it', async () => {
  const link = new HeldLink();
  const controls = new CopyControls('p1', link.send, link.settle);
  let finishRevert = () => undefined as void;
  link.slow = new Promise<void>((resolve) => (finishRevert = resolve));
  await expect(controls.apply('n2', { type: 'revert', snapshot: 's' }, 5)).rejects.toThrow('no answer');
  // Still running there: the settle waits, so the next operation is not sent yet.
  const next = controls.apply('n2', { type: 'snapshot', name: 't' }, 5);
  await settleMicrotasks();
  expect(link.applied).toEqual([]);
  link.slow = undefined;
  finishRevert();
  await next;
  expect(link.applied).toEqual(['revert to s', 'snapshot t']);
});

test('a copy that cannot settle now holds back everything else sent to it, and only it', async () => {
  const link = new HeldLink();
  const controls = new CopyControls('p1', link.send, link.settle);
  link.holding = true;
  await expect(controls.apply('n2', { type: 'resize', sizeBytes: 1 << 30 }, 5)).rejects.toThrow('no answer');
  const refused = await controls.apply('n2', { type: 'snapshot', name: 't' }, 5).catch((err: unknown) => err);
  expect(refused).toBeInstanceOf(WeftError);
  expect(refused).toMatchObject({ kind: 'UNAVAILABLE', message: expect.stringMatching(/copy on node n2 has not settled the control operations it gave no answer to/) });
  // Another copy is not held back by it.
  link.holding = false;
  await controls.apply('n3', { type: 'snapshot', name: 't' }, 5);
  expect(link.applied).toEqual(['snapshot t']);
});

test('checks that change nothing carry no id, and ids are never reused', async () => {
  const sent: CopyOperation[] = [];
  const controls = new CopyControls('p1', async (_node, operation) => void sent.push(operation), async () => undefined);
  await controls.apply('n2', { type: 'revert', snapshot: 's', checkOnly: true }, 5);
  await controls.apply('n2', { type: 'revert', snapshot: 's' }, 5);
  await controls.apply('n3', { type: 'revert', snapshot: 's' }, 5);
  expect(sent.map((operation) => operation.id)).toEqual([undefined, 'p1.1', 'p1.2']);
});

test('operations without an id run as before, and a settled id is refused only once', async () => {
  const ledger = new ControlLedger();
  await expect(ledger.run(undefined, async () => 'ran')).resolves.toBe('ran');
  await ledger.settle(['x.1']);
  await expect(ledger.run('x.1', async () => 'ran')).rejects.toThrow(/came after its primary had given up on it/);
  await expect(ledger.run('x.1', async () => 'ran')).resolves.toBe('ran');
});

test("a copy's own refusal leaves nothing to settle; a call lost on the way does", async () => {
  const settles: string[][] = [];
  let answer: Error | undefined = failedPrecondition('the copy has a client');
  const controls = new CopyControls(
    'p1',
    async () => {
      if (answer) throw answer;
    },
    async (_node, ids) => void settles.push(ids),
  );
  await expect(controls.apply('n2', { type: 'revert', snapshot: 's' }, 5)).rejects.toThrow('the copy has a client');
  answer = new NoAnswerError('no answer within 5 s');
  await expect(controls.apply('n2', { type: 'revert', snapshot: 's' }, 5)).rejects.toThrow('no answer');
  answer = undefined;
  await controls.apply('n2', { type: 'snapshot', name: 't' }, 5);
  expect(settles).toEqual([['p1.2']]);
});
