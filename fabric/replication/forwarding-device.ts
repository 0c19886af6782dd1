// Attach is local (DESIGN.md): every node serves every replicated volume, and a node that is not its
// primary forwards each request to the primary through a ForwardingDevice, so that a consumer keeps
// one address across failovers and sees a pause, not an error, while the primary changes.
//
// The retry rule. A request fails over to wherever route() says the primary is now when its target
// answers "I am not the primary" or is gone: EPERM (a newer primary fenced it), ESHUTDOWN (it stopped
// serving), a broken connection (closed, reset, no reply in time), or no target could be reached at
// all (connection refused, export refused). The target is then dropped and closed, which fails every
// other request in flight on it, so those are re-issued too. After a short backoff, the requests are
// sent again. Any other answer (EIO from the primary's disk, ENOSPC, EINVAL, ENOTSUP...) is the
// primary's answer and goes back to the client unchanged. A request that finds no working primary
// for retryForMs fails with EIO.
//
// Why re-issuing is safe. A request that failed this way may or may not have run. Re-running it is
// harmless: reads, writes, trims and zeroes of a range are idempotent at block level (the same
// bytes end up there), and the client cannot count on the order of requests it has in flight at
// once, so it has not issued a later write to the same range yet. A fenced old primary cannot land
// such a request late on the new one: the replicas refuse its epoch. Nor can the same primary run a
// request of a connection given up late (still unread in its socket buffer when the one sent again
// was answered, and the client's next write to the range with it): the forwarder's connections
// carry a generation, and the primary refuses an older one's requests once a newer one has opened
// (forwarder-fence.ts). A FLUSH re-issued on a new
// primary also covers the writes the old one acknowledged: an acknowledged write was held by every
// member of the in-sync set, the new primary is one of them, and its flush makes durable everything
// written to it and to its replicas, through any connection.
//
// Whose requests are re-issued. Only those of a client still connected: the order argument above holds
// while its connection is open. A client whose connection ended (it gave up waiting, or died) may
// have reconnected, here or on another node, sent its writes again and written the same range anew
// since; a copy of its old write re-issued then would land over the newer one. So a request whose
// owner (the client's handle, block-device.ts: RequestOwner) has been abandoned is not sent again:
// it fails with ESHUTDOWN, which no one reads. A request gives up retryForMs after its first failure.

import { failedPrecondition, IoError } from '../errors';
import type { Logger } from '../logger';
import { NbdConnectionError } from '../nbd/client';
import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, RequestOwner, VolumeLayer, WriteZeroesOptions } from '../volume/block-device';

/**
 * Where a volume's primary is reached: the node's own stack when this node is the serving primary
 * (no TCP hop), or a connection to the volume's export on the primary's node (nbd-route-target.ts).
 */
export interface RouteTarget extends Pick<BlockDevice, 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes' | 'blockStatus'> {
  /** Called once, when the forwarder drops the target; requests still in flight on it may fail. */
  close(): void;
}

export interface ForwardingDeviceOptions {
  volume: string;
  /** The volume's size now (it may grow while attached). */
  sizeBytes: () => number;
  /**
   * Where the primary is now. Asked when a target is needed, one call at a time (concurrent requests
   * wait for the same answer). A rejection (no primary yet, its node unreachable) is retried as a lost
   * target is.
   */
  route: () => Promise<RouteTarget>;
  /** How long one request keeps looking for a primary before it fails with EIO. */
  retryForMs?: number;
  /** Called once, when the forwarder is closed. */
  onClose?: () => void;
  /**
   * NBD_FLAG_CAN_MULTI_CONN. True is right when the primary's own stack answers true: a flush there
   * covers writes through every connection to it (the forwarders of all nodes) and, after a failover,
   * the writes the old primary acknowledged (see above). Every node runs the same stack, so the daemon
   * passes its local stack's answer. Default false, which is always safe.
   */
  canMultiConn?: boolean;
  logger?: Logger;
}

export const DEFAULT_RETRY_FOR_MS = 30_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 1000;

/** route() failed: no primary could be reached this time. */
class NoRouteError extends Error {
  constructor(volume: string, cause: unknown) {
    super(`volume ${volume}: no route to its primary: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'NoRouteError';
  }
}

/**
 * route()'s answer when the volume it forwards to is gone from the cluster: deleted, or deleted and
 * made again under its name (another volume, which this client's requests must never reach). Final:
 * the request fails with it at once (ESHUTDOWN), and so does every later one.
 */
export class VolumeGoneError extends IoError {
  constructor(message: string) {
    super('ESHUTDOWN', message);
    this.name = 'VolumeGoneError';
  }
}

/** The failures that mean "not the primary, or the primary is gone" (see the top of this file). */
function isRetryable(err: unknown): boolean {
  if (err instanceof VolumeGoneError) return false;
  if (err instanceof NoRouteError || err instanceof NbdConnectionError) return true;
  return err instanceof IoError && (err.errno === 'EPERM' || err.errno === 'ESHUTDOWN');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A layer, so that a volume's stack can sit on it (the metrics layer of a node that forwards a volume
 * it holds no copy of): I/O only, the control operations are the primary's, through its API.
 */
export class ForwardingDevice implements VolumeLayer {
  readonly readOnly = false;
  private target: RouteTarget | undefined;
  /** The route() call under way, which every request that needs a target waits for. */
  private routing: Promise<RouteTarget> | undefined;
  private closed = false;
  /** Counts primaryMoved() calls: a route found across one is not taken, unless `stillRight` says it is at the new primary. */
  private moves = 0;
  private stillRight: ((target: RouteTarget) => boolean) | undefined;
  private readonly retryForMs: number;

  constructor(private readonly options: ForwardingDeviceOptions) {
    this.retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
  }

  get sizeBytes(): number {
    return this.options.sizeBytes();
  }

  read(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Buffer> {
    return this.forward((target) => target.read(offsetBytes, lengthBytes), owner);
  }

  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void> {
    // The data stays the caller's until this settles, which is after the last attempt settled.
    return this.forward((target) => target.write(offsetBytes, data, fua), owner);
  }

  flush(owner?: RequestOwner): Promise<void> {
    return this.forward((target) => target.flush(), owner);
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.forward((target) => target.trim(offsetBytes, lengthBytes, fua), owner);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void> {
    return this.forward((target) => target.writeZeroes(offsetBytes, lengthBytes, options), owner);
  }

  blockStatus(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Extent[]> {
    return this.forward((target) => target.blockStatus(offsetBytes, lengthBytes), owner);
  }

  // What the primary of a replicated volume supports (the local replica's stack). Fast zero is not
  // offered: whether zeroing is fast is known only on the primary, which may change between calls.
  canMultiConn(): boolean {
    return this.options.canMultiConn ?? false;
  }

  canFua(): boolean {
    return true;
  }

  canTrim(): boolean {
    return true;
  }

  canZero(): boolean {
    return true;
  }

  canFastZero(): boolean {
    return false;
  }

  snapshot(): Promise<void> {
    return this.refuseControl('snapshot');
  }

  resize(): Promise<void> {
    return this.refuseControl('resize');
  }

  revert(): Promise<void> {
    return this.refuseControl('revert');
  }

  private refuseControl(operation: string): Promise<void> {
    return Promise.reject(failedPrecondition(`volume ${this.options.volume}: a ${operation} goes through the API, to the primary; this node only forwards I/O`));
  }

  /** Closes the current target; requests still retrying, and any made later, fail with ESHUTDOWN. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const target = this.target;
    this.target = undefined;
    target?.close();
    this.options.onClose?.();
  }

  /**
   * The store names another primary (or epoch) than when the target was found: the target is
   * dropped, its requests in flight sent again on a new route, and a route found meanwhile is not
   * taken; unless stillRight says the target reaches the new primary already. So a primary that
   * hangs (alive, not answering) is left as soon as another is promoted, not once its requests time
   * out; one that still serves is found again by the new route.
   */
  primaryMoved(stillRight?: (target: RouteTarget) => boolean, why = 'the store names another primary'): void {
    this.moves++;
    this.stillRight = stillRight;
    const target = this.target;
    if (target && !stillRight?.(target)) this.drop(target, new Error(why));
  }

  /** Runs call on the current target until it gets an answer from a primary (see the top of this file). */
  private async forward<T>(call: (target: RouteTarget) => Promise<T>, owner: RequestOwner | undefined): Promise<T> {
    // From the first failure, not from the request's arrival: a FLUSH may wait longer than the window
    // on a primary that answers slowly, and must still be retried once that primary goes away. On
    // the monotonic clock: a step of the wall clock must not end or stretch it.
    let giveUpAt: number | undefined;
    let backoffMs = FIRST_BACKOFF_MS;
    for (;;) {
      if (this.closed) throw this.closedError();
      let target: RouteTarget | undefined;
      try {
        target = this.target ?? (await this.reroute());
        // Asked here, after finding a primary may have taken seconds (a failover), before the send.
        if (owner?.abandoned) throw this.abandonedError();
        return await call(target);
      } catch (err) {
        if (this.closed) throw this.closedError();
        if (owner?.abandoned) throw this.abandonedError(); // not a failure of the target: it is kept
        if (!isRetryable(err)) throw err;
        if (target) this.drop(target, err);
        giveUpAt ??= performance.now() + this.retryForMs;
        const leftMs = giveUpAt - performance.now();
        if (leftMs <= 0) {
          this.options.logger?.error({ volume: this.options.volume, err: (err as Error).message }, 'no primary answered in time; failing the request');
          throw new IoError('EIO', `volume ${this.options.volume}: no primary answered within ${this.retryForMs} ms; last error: ${(err as Error).message}`);
        }
        // No pause when another request has already found the new primary.
        if (!this.target) await sleep(Math.min(backoffMs, leftMs));
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private reroute(): Promise<RouteTarget> {
    const moves = this.moves;
    this.routing ??= this.options.route().then(
      (target) => {
        this.routing = undefined;
        if (this.closed) {
          target.close();
          throw this.closedError();
        }
        if (this.moves !== moves && !this.stillRight?.(target)) {
          target.close();
          throw new NoRouteError(this.options.volume, new Error('the primary moved while it was being found'));
        }
        this.target = target;
        return target;
      },
      (err: unknown) => {
        this.routing = undefined;
        if (err instanceof VolumeGoneError) throw err;
        const noRoute = new NoRouteError(this.options.volume, err);
        this.options.logger?.warn({ volume: this.options.volume, err: noRoute.message }, 'no route to the primary; retrying');
        throw noRoute;
      },
    );
    return this.routing;
  }

  /** Drops a target that failed (once: the other requests that fail on it find it gone already). */
  private drop(target: RouteTarget, err: unknown): void {
    if (this.target !== target) return;
    this.target = undefined;
    this.options.logger?.warn({ volume: this.options.volume, err: (err as Error).message }, 'lost the primary; re-routing its requests');
    target.close(); // fails the requests still in flight on it, which are then re-issued too
  }

  private abandonedError(): IoError {
    return new IoError('ESHUTDOWN', `volume ${this.options.volume}: the client's connection has ended; its request is not sent again`);
  }

  private closedError(): IoError {
    return new IoError('ESHUTDOWN', `volume ${this.options.volume}: the forwarding device is closed`);
  }
}
