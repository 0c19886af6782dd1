// The in-flight caps as plain objects: a connection's own caps, the node's, the rule that keeps the
// node's cap from deadlocking, and what a closed connection gives back.

import { ConnectionInFlight, NodeInFlightBudget } from '../../fabric/nbd/inflight-budget';

const MiB = 1024 * 1024;

function connection(node: NodeInFlightBudget, maxBytes = 4 * MiB, maxRequests = 8): { inFlight: ConnectionInFlight; woken: () => number } {
  let wakes = 0;
  const inFlight = new ConnectionInFlight(node, maxRequests, maxBytes, () => wakes++);
  return { inFlight, woken: () => wakes };
}

describe('ConnectionInFlight', () => {
  test('is full at its own byte cap or request count, and not before', () => {
    const node = new NodeInFlightBudget(64 * MiB);
    const { inFlight } = connection(node);
    inFlight.add(3 * MiB);
    expect(inFlight.full()).toBe(false);
    inFlight.add(MiB);
    expect(inFlight.full()).toBe(true);
    inFlight.remove(MiB);
    for (let i = 0; i < 6; i++) inFlight.add(0);
    expect(inFlight.full()).toBe(false);
    inFlight.add(0); // the eighth request
    expect(inFlight.full()).toBe(true);
  });

  test('a connection holding anything waits while the node is at its cap; one holding nothing may read within the overdraft (one request), not past it', () => {
    const node = new NodeInFlightBudget(4 * MiB, 2 * MiB);
    const busy = connection(node, 64 * MiB);
    const idle = connection(node, 64 * MiB);
    const third = connection(node, 64 * MiB);
    busy.inFlight.add(5 * MiB);
    expect(node.full()).toBe(true);
    expect(busy.inFlight.full()).toBe(true);
    expect(idle.inFlight.full()).toBe(false);
    idle.inFlight.add(MiB);
    expect(idle.inFlight.full()).toBe(true);
    // The overdraft is taken: a third connection holding nothing waits too, so that many of them
    // cannot each hold a request more than the node can.
    expect(third.inFlight.full()).toBe(true);
    third.inFlight.waitForRoom();
    idle.inFlight.remove(MiB); // within the overdraft again: woken, and it may read
    expect(third.woken()).toBe(1);
    expect(third.inFlight.full()).toBe(false);
  });

  test('a WRITE payload on its way counts against the connection and the node before it is a request', () => {
    const node = new NodeInFlightBudget(4 * MiB, MiB);
    const writer = connection(node, 64 * MiB);
    writer.inFlight.reserve(5 * MiB);
    expect(node.bytes).toBe(5 * MiB);
    expect(connection(node, 64 * MiB).inFlight.full()).toBe(true); // past the overdraft
    writer.inFlight.add(0); // the request, once whole
    writer.inFlight.remove(5 * MiB); // its reply has left
    expect(node.bytes).toBe(0);
  });

  test('connections waiting for room are woken once the node is below its cap, not before', () => {
    const node = new NodeInFlightBudget(4 * MiB);
    const first = connection(node);
    const second = connection(node);
    first.inFlight.add(2 * MiB);
    second.inFlight.add(3 * MiB);
    first.inFlight.waitForRoom();
    second.inFlight.waitForRoom();
    first.inFlight.remove(MiB); // 4 MiB held: still at the cap
    expect([first.woken(), second.woken()]).toEqual([0, 0]);
    first.inFlight.remove(MiB);
    expect([first.woken(), second.woken()]).toEqual([1, 1]);
    second.inFlight.remove(MiB);
    expect([first.woken(), second.woken()]).toEqual([1, 1]); // woken once per wait
  });

  test('closing gives back everything still held, stops waiting, and ignores later removes', () => {
    const node = new NodeInFlightBudget(4 * MiB);
    const closing = connection(node);
    const other = connection(node);
    closing.inFlight.add(3 * MiB);
    other.inFlight.add(2 * MiB);
    closing.inFlight.waitForRoom();
    other.inFlight.waitForRoom();
    closing.inFlight.close(0);
    expect(node.bytes).toBe(2 * MiB);
    expect([closing.woken(), other.woken()]).toEqual([0, 1]);
    closing.inFlight.remove(3 * MiB);
    expect(node.bytes).toBe(2 * MiB);
  });

  test('closing keeps what running device calls hold until each ends: a client that resets and comes back cannot pass the cap', () => {
    const node = new NodeInFlightBudget(4 * MiB);
    const closing = connection(node);
    closing.inFlight.add(1 * MiB); // replied, its reply still in the socket's buffer
    closing.inFlight.add(2 * MiB); // its device call still running
    closing.inFlight.close(2 * MiB);
    expect(node.bytes).toBe(2 * MiB);
    closing.inFlight.remove(1 * MiB); // the reply's callback after the close: ignored
    expect(node.bytes).toBe(2 * MiB);
    closing.inFlight.endedAfterClose(2 * MiB);
    expect(node.bytes).toBe(0);
  });
});
