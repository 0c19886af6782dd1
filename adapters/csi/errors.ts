// The one place where failures become CSI statuses: the driver's CsiError, weftd's WeftApiError and
// the host helpers' WeftError keep their code unless the spec names another for that RPC.

import { status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { WeftApiError } from '../../fabric/api/client';
import { statusOf } from '../../fabric/api/status';

/** A refusal the driver decided on, with the status code the CSI spec names for it. */
export class CsiError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalidArgument = (message: string) => new CsiError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new CsiError(status.NOT_FOUND, message);
export const alreadyExists = (message: string) => new CsiError(status.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string) => new CsiError(status.FAILED_PRECONDITION, message);
export const resourceExhausted = (message: string) => new CsiError(status.RESOURCE_EXHAUSTED, message);
export const outOfRange = (message: string) => new CsiError(status.OUT_OF_RANGE, message);
export const aborted = (message: string) => new CsiError(status.ABORTED, message);
export const unavailable = (message: string) => new CsiError(status.UNAVAILABLE, message);

/**
 * Where the spec names another code than Weft's for the same condition. ControllerExpandVolume:
 * a size the pool cannot hold is an unsupported capacity_range; FAILED_PRECONDITION means "in use,
 * and only offline expansion" there (external-resizer then waits for the pods to go), while Weft's
 * are for a while (a copy out of sync, a failover under way): UNAVAILABLE, tried again. Probe:
 * weftd out of reach means the plugin is not healthy.
 */
const CODE_BY_RPC: Record<string, Partial<Record<status, status>>> = {
  ControllerExpandVolume: { [status.RESOURCE_EXHAUSTED]: status.OUT_OF_RANGE, [status.FAILED_PRECONDITION]: status.UNAVAILABLE },
  Probe: { [status.UNAVAILABLE]: status.FAILED_PRECONDITION },
};

/**
 * The status a CO sees when method (e.g. "CreateVolume") fails with error. A WeftError (a host
 * helper's: a mount, a format) maps by its kind; anything else is a bug, INTERNAL.
 */
export function csiStatusOf(error: unknown, method: string): { code: status; details: string } {
  if (error instanceof CsiError) return { code: error.code, details: error.message };
  const { code, details } = error instanceof WeftApiError ? { code: error.code, details: error.message } : statusOf(error);
  return { code: CODE_BY_RPC[method]?.[code] ?? code, details };
}

/** Maps the error for the CO; logs INTERNAL failures at error level, refusals at debug. */
export function toCsiServiceError(error: unknown, method: string, logger: Logger): Partial<ServiceError> {
  const { code, details } = csiStatusOf(error, method);
  if (code === status.INTERNAL) logger.error({ err: error, method }, 'CSI request failed');
  else logger.debug({ method, code: status[code], details }, 'CSI request refused');
  return { code, details };
}

/** Resolves with undefined instead of rejecting when weftd answers with this code. */
export async function unlessWeftd<T>(code: status, promise: Promise<T>): Promise<T | undefined> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof WeftApiError && error.code === code) return undefined;
    throw error;
  }
}

/** Resolves with undefined when what the call names does not exist. */
export function unlessNotFound<T>(promise: Promise<T>): Promise<T | undefined> {
  return unlessWeftd(status.NOT_FOUND, promise);
}
