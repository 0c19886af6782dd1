// Maps what a BlockDevice throws to the error value an NBD client sees. The one place where
// IoError errno names become protocol numbers; anything unexpected becomes EIO.

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

/** The NBD error value for a device failure; `expected` is false for anything not an IoError. */
export function nbdErrorOf(err: unknown): { value: number; expected: boolean } {
  if (err instanceof IoError && NBD_ERRNO[err.errno] !== undefined) {
    return { value: NBD_ERRNO[err.errno], expected: true };
  }
  return { value: P.NBD_EIO, expected: false };
}
