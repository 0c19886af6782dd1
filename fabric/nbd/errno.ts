// Maps what a BlockDevice throws to the error value an NBD client sees. The one place where
// IoError errno names become protocol numbers; anything unexpected becomes EIO. Two values depend
// on the request's flags, as the protocol says: EOVERFLOW only for a READ with NBD_CMD_FLAG_DF, ENOTSUP
// only with NBD_CMD_FLAG_FAST_ZERO; otherwise both become EINVAL, as nbdkit does.

import { IoError, type IoErrno } from '../errors';
import * as P from './protocol';

const NBD_ERRNO: Record<IoErrno, number> = {
  EPERM: P.NBD_EPERM,
  EIO: P.NBD_EIO,
  ENOMEM: P.NBD_ENOMEM,
  EINVAL: P.NBD_EINVAL,
  ENOSPC: P.NBD_ENOSPC,
  EOVERFLOW: P.NBD_EOVERFLOW,
  ENOTSUP: P.NBD_ENOTSUP,
  ESHUTDOWN: P.NBD_ESHUTDOWN,
};

/** The errno an NBD client reports for an error value a server sent; EIO for any it does not know. */
export function ioErrnoOf(value: number): IoErrno {
  for (const [errno, nbd] of Object.entries(NBD_ERRNO)) if (nbd === value) return errno as IoErrno;
  return 'EIO';
}

/** The request flag without which each errno may not be sent. */
const REQUIRED_FLAG: Partial<Record<IoErrno, number>> = {
  EOVERFLOW: P.CMD_FLAG_DF,
  ENOTSUP: P.CMD_FLAG_FAST_ZERO,
};

/** The NBD error value for a device failure of a request with these flags; `expected` is false for anything not an IoError. */
export function nbdErrorOf(err: unknown, requestFlags: number): { value: number; expected: boolean } {
  if (!(err instanceof IoError) || NBD_ERRNO[err.errno] === undefined) return { value: P.NBD_EIO, expected: false };
  const required = REQUIRED_FLAG[err.errno];
  if (required !== undefined && (requestFlags & required) === 0) return { value: P.NBD_EINVAL, expected: true };
  return { value: NBD_ERRNO[err.errno], expected: true };
}
