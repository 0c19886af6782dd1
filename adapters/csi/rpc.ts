// Adapts promise-returning CSI handlers to grpc-js: every failure, thrown or rejected, goes through
// errors.ts with the RPC's name, so that each RPC gets the status code the spec names for it.

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toCsiServiceError } from './errors';

/** A service's handlers by RPC name, each taking its own request type and answering the response. */
export type Handlers = Record<string, (request: never) => Promise<object> | object>;

export function serviceImplementation(handlers: Handlers, logger: Logger): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [method, handle] of Object.entries(handlers)) implementation[method] = unary(method, handle, logger);
  return implementation;
}

function unary(method: string, handle: Handlers[string], logger: Logger): handleUnaryCall<object, object> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handle(call.request as never))
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toCsiServiceError(error, method, logger)),
      );
  };
}
