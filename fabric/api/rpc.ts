// Adapters from promise-returning handlers to grpc-js call handlers: every failure, thrown or
// rejected, goes through status.ts on its way to the caller, and every call is counted (call-stats.ts).

import { performance } from 'node:perf_hooks';
import { status, type handleServerStreamingCall, type handleUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ApiCallStats } from './call-stats';
import { toServiceError } from './status';

/** What every handler of the API shares: where it logs, where its calls are counted. */
export interface RpcContext {
  logger: Logger;
  calls: ApiCallStats;
}

export function unary<Request, Response>(
  rpc: RpcContext,
  handle: (request: Request) => Promise<Response> | Response,
): handleUnaryCall<Request, Response> {
  return (call, callback) =>
    settle(rpc, call.getPath(), () => handle(call.request), (failure, response) => (failure ? callback(failure) : callback(null, response)));
}

/**
 * The handler sends messages with send(); the stream ends when its promise settles. Messages
 * for a caller that has gone away (cancelled) are dropped, and `gone` is aborted then, for a
 * handler whose work is for that caller alone to stop.
 */
export function serverStream<Request, Response>(
  rpc: RpcContext,
  handle: (request: Request, send: (message: Response) => void, gone: AbortSignal) => Promise<void>,
): handleServerStreamingCall<Request, Response> {
  return (call) => {
    const gone = new AbortController();
    call.on('cancelled', () => gone.abort());
    settle(
      rpc,
      call.getPath(),
      () => handle(call.request, (message) => call.cancelled || call.write(message), gone.signal),
      (failure) => {
        if (failure && gone.signal.aborted) rpc.logger.info({ method: call.getPath(), details: failure.details }, 'call stopped: its caller went away');
        return failure ? call.emit('error', failure) : call.end();
      },
    );
  };
}

/** Runs a handler, counts the call with its code and latency, then answers (failures as status.ts maps them). */
function settle<T>(rpc: RpcContext, path: string, work: () => Promise<T> | T, answer: (failure: Partial<ServiceError> | null, value?: T) => void): void {
  const startMs = performance.now();
  const count = (code: status) => rpc.calls.record(path, code, (performance.now() - startMs) / 1000);
  Promise.resolve()
    .then(work)
    .then(
      (value) => {
        count(status.OK);
        answer(null, value);
      },
      (error: unknown) => {
        const failure = toServiceError(error, path, rpc.logger);
        count(failure.code ?? status.UNKNOWN);
        answer(failure);
      },
    );
}
