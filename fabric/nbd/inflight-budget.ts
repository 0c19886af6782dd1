// Bytes of NBD requests held in memory, per connection and across the node: a request holds its
// bytes from when it is accepted until its reply has left the socket's buffer. Over a cap, reading waits.

/**
 * The node's share: every connection takes from it; a connection over it waits for room. A
 * connection holding nothing may still take one request past the limit (it cannot wait for bytes it
 * does not hold), while the node is within one request of overdraft: so that a node whose budget is
 * held by clients that read nothing still serves the others, one request at a time, and that many
 * connections that hold nothing cannot each take a request more than it can hold.
 */
export class NodeInFlightBudget {
  private usedBytes = 0;
  private readonly waiting = new Set<() => void>();

  constructor(
    readonly limitBytes: number,
    readonly overdraftBytes = 0,
  ) {}

  get bytes(): number {
    return this.usedBytes;
  }

  full(): boolean {
    return this.usedBytes >= this.limitBytes;
  }

  /** Past the overdraft too: not even a connection holding nothing takes a request. */
  overdrawn(): boolean {
    return this.usedBytes >= this.limitBytes + this.overdraftBytes;
  }

  take(bytes: number): void {
    this.usedBytes += bytes;
  }

  /** Gives bytes back; once within the overdraft, wakes every connection waiting for room (in order: each checks whether it may go on). */
  give(bytes: number): void {
    this.usedBytes -= bytes;
    if (this.overdrawn() || this.waiting.size === 0) return;
    const woken = [...this.waiting];
    this.waiting.clear();
    for (const wake of woken) wake();
  }

  /** Calls `wake` once, the next time bytes are given back below the limit. */
  waitForRoom(wake: () => void): void {
    this.waiting.add(wake);
  }

  cancelWait(wake: () => void): void {
    this.waiting.delete(wake);
  }
}

/** One connection's requests in flight: counted against its own caps and the node's. */
export class ConnectionInFlight {
  private requests = 0;
  private bytes = 0;
  private closed = false;

  constructor(
    private readonly node: NodeInFlightBudget,
    private readonly maxRequests: number,
    private readonly maxBytes: number,
    /** Called when the node has room again after waitForRoom(). */
    private readonly onRoom: () => void,
  ) {}

  /**
   * True while the connection should read no more requests. A connection with nothing in flight may
   * read one while the node is within its overdraft (NodeInFlightBudget).
   */
  full(): boolean {
    if (this.requests === 0 && this.bytes === 0) return this.node.overdrawn();
    return this.requests >= this.maxRequests || this.bytes >= this.maxBytes || this.node.full();
  }

  /** A WRITE's payload on its way (not a request in flight yet): its bytes count from now. */
  reserve(bytes: number): void {
    if (this.closed) return;
    this.bytes += bytes;
    this.node.take(bytes);
  }

  add(bytes: number): void {
    if (this.closed) return;
    this.requests++;
    this.bytes += bytes;
    this.node.take(bytes);
  }

  remove(bytes: number): void {
    if (this.closed) return;
    this.requests--;
    this.bytes -= bytes;
    this.node.give(bytes);
  }

  waitForRoom(): void {
    if (!this.closed) this.node.waitForRoom(this.onRoom);
  }

  /**
   * The connection is gone, and later removes are ignored: what its replies held goes back to the
   * node now, what its running device calls hold (runningBytes: their payloads, their reads' data)
   * as each ends (endedAfterClose). Else a client that resets and connects again, over and over,
   * would take more than the node's cap from calls still running.
   */
  close(runningBytes: number): void {
    if (this.closed) return;
    this.closed = true;
    this.node.cancelWait(this.onRoom);
    this.node.give(this.bytes - runningBytes);
    this.requests = 0;
    this.bytes = 0;
  }

  /** A device call that was running when the connection closed has ended: its bytes go back to the node. */
  endedAfterClose(bytes: number): void {
    this.node.give(bytes);
  }
}
