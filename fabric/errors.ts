// Typed errors. Control-plane failures carry a kind that the gRPC layer maps to a status code;
// data-plane failures carry an errno that the NBD layer maps to the protocol's error values.

export type ErrorKind =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INVALID_ARGUMENT'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** A control-plane error: a message a user can act on, and its kind. */
export class WeftError extends Error {
  constructor(readonly kind: ErrorKind, message: string) {
    super(message);
    this.name = 'WeftError';
  }
}

/** A call to another node that got no answer in time: it may have been carried out there all the same. */
export class NoAnswerError extends WeftError {
  constructor(message: string) {
    super('UNAVAILABLE', message);
    this.name = 'NoAnswerError';
  }
}

export const notFound = (message: string) => new WeftError('NOT_FOUND', message);
export const alreadyExists = (message: string) => new WeftError('ALREADY_EXISTS', message);
export const invalidArgument = (message: string) => new WeftError('INVALID_ARGUMENT', message);
export const resourceExhausted = (message: string) => new WeftError('RESOURCE_EXHAUSTED', message);
export const failedPrecondition = (message: string) => new WeftError('FAILED_PRECONDITION', message);
/** Work given up because its caller went away (a call cancelled). */
export const cancelled = (message: string) => new WeftError('ABORTED', message);

/** FAILED_PRECONDITION because something has the volume open (a client, a connection, a verify): a caller may wait for it to let go. */
export class InUseError extends WeftError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', message);
  }
}

export type IoErrno = 'EPERM' | 'EIO' | 'ENOMEM' | 'EINVAL' | 'ENOSPC' | 'EOVERFLOW' | 'ENOTSUP' | 'ESHUTDOWN';

/** A data-plane error: the errno an NBD client will see, plus a message for the log. */
export class IoError extends Error {
  constructor(readonly errno: IoErrno, message: string) {
    super(message);
    this.name = 'IoError';
  }
}

/** A block read back does not match its checksum: this copy is damaged there (another may not be). */
export class ChecksumError extends IoError {
  constructor(message: string) {
    super('EIO', message);
    this.name = 'ChecksumError';
  }
}
