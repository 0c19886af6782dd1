// The one place where errors become gRPC statuses: a WeftError's kind picks the code and its
// message reaches the caller; anything else is a bug, reported as INTERNAL and logged.

import { status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { WeftError, type ErrorKind } from '../errors';
import { WeftApiError } from './client';

const CODE_OF_KIND: Record<ErrorKind, status> = {
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ABORTED: status.ABORTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
};

/** The status a caller sees for this error. */
export function statusOf(error: unknown): { code: status; details: string } {
  if (error instanceof WeftError) return { code: CODE_OF_KIND[error.kind], details: error.message };
  if (error instanceof WeftApiError) return { code: error.code, details: error.message }; // another node's answer
  return { code: status.INTERNAL, details: error instanceof Error ? error.message : String(error) };
}

/** Maps the error for the caller; logs it at error level when it is INTERNAL. */
export function toServiceError(error: unknown, method: string, logger: Logger): Partial<ServiceError> {
  const { code, details } = statusOf(error);
  if (code === status.INTERNAL) logger.error({ err: error, method }, 'request failed');
  else logger.debug({ method, code: status[code], details }, 'request refused');
  return { code, details };
}
