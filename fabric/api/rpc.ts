// Adapters from promise-returning handlers to grpc-js call handlers: every failure, thrown or
// rejected, goes through status.ts on its way to the caller.

import type { handleServerStreamingCall, handleUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toServiceError } from './status';

export function unary<Request, Response>(
  logger: Logger,
  handle: (request: Request) => Promise<Response> | Response,
): handleUnaryCall<Request, Response> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handle(call.request))
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error, call.getPath(), logger)),
      );
  };
}

/**
 * The handler sends messages with send(); the stream ends when its promise settles. Messages
 * for a caller that has gone away (cancelled) are dropped; the handler itself runs to its end.
 */
export function serverStream<Request, Response>(
  logger: Logger,
  handle: (request: Request, send: (message: Response) => void) => Promise<void>,
): handleServerStreamingCall<Request, Response> {
  return (call) => {
    Promise.resolve()
      .then(() => handle(call.request, (message) => call.cancelled || call.write(message)))
      .then(
        () => call.end(),
        (error: unknown) => call.emit('error', toServiceError(error, call.getPath(), logger)),
      );
  };
}
