// Decides whether a transmission request may reach the device, and if not, which error value the
// client gets, following the spec's "Error values" and "Block size constraints". Pure function.

import type { NbdRequest } from './request-parser';
import * as P from './protocol';

export interface RequestLimits {
  sizeBytes: number;
  /** The transmission flags the client was sent: what it did not see advertised, it may not use. */
  transmissionFlags: number;
  structuredReplies: boolean;
  /** base:allocation was negotiated, so BLOCK_STATUS is allowed. */
  blockStatus: boolean;
  maxRequestBytes: number;
}

export interface Rejection {
  error: number;
  reason: string;
}

export const COMMAND_NAMES: Record<number, string> = {
  [P.CMD_READ]: 'READ',
  [P.CMD_WRITE]: 'WRITE',
  [P.CMD_DISC]: 'DISC',
  [P.CMD_FLUSH]: 'FLUSH',
  [P.CMD_TRIM]: 'TRIM',
  [P.CMD_WRITE_ZEROES]: 'WRITE_ZEROES',
  [P.CMD_BLOCK_STATUS]: 'BLOCK_STATUS',
};

/** Flags each command accepts, once advertised. FUA is valid on every command when NBD_FLAG_SEND_FUA is. */
const ALLOWED_FLAGS: Record<number, number> = {
  [P.CMD_READ]: P.CMD_FLAG_FUA | P.CMD_FLAG_DF,
  [P.CMD_WRITE]: P.CMD_FLAG_FUA,
  [P.CMD_FLUSH]: P.CMD_FLAG_FUA,
  [P.CMD_TRIM]: P.CMD_FLAG_FUA,
  [P.CMD_WRITE_ZEROES]: P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_FAST_ZERO,
  [P.CMD_BLOCK_STATUS]: P.CMD_FLAG_FUA | P.CMD_FLAG_REQ_ONE,
};

/** Commands usable only when a transmission flag was advertised (FLUSH always is), and that flag. */
const ADVERTISED_COMMANDS: Record<number, number> = {
  [P.CMD_TRIM]: P.FLAG_SEND_TRIM,
  [P.CMD_WRITE_ZEROES]: P.FLAG_SEND_WRITE_ZEROES,
};

const reject = (error: number, reason: string): Rejection => ({ error, reason });

/** Returns why the request must fail, or undefined when it may go to the device. DISC is not checked. */
export function checkRequest(req: NbdRequest, limits: RequestLimits): Rejection | undefined {
  const name = COMMAND_NAMES[req.type];
  const allowed = ALLOWED_FLAGS[req.type];
  if (allowed === undefined) return reject(P.NBD_EINVAL, `command ${req.type} is not supported`);
  const advertised = limits.transmissionFlags;
  // Whatever its flags, a write to a read-only export is refused as such.
  const writes = req.type === P.CMD_WRITE || req.type === P.CMD_TRIM || req.type === P.CMD_WRITE_ZEROES;
  if (writes && (advertised & P.FLAG_READ_ONLY) !== 0) return reject(P.NBD_EPERM, `${name} on a read-only export`);
  const needed = ADVERTISED_COMMANDS[req.type];
  if (needed !== undefined && (advertised & needed) === 0) return reject(P.NBD_EINVAL, `${name} is not supported by this export`);
  if ((req.flags & ~(allowed & ~withheldFlags(advertised))) !== 0) {
    return reject(P.NBD_EINVAL, `flags 0x${req.flags.toString(16)} are not valid for ${name}`);
  }
  if (req.type === P.CMD_FLUSH) {
    return req.offsetBytes === 0 && req.lengthBytes === 0 ? undefined : reject(P.NBD_EINVAL, 'FLUSH with a nonzero offset or length');
  }
  if (req.type === P.CMD_BLOCK_STATUS && !limits.blockStatus) {
    return reject(P.NBD_EINVAL, 'BLOCK_STATUS without a negotiated metadata context');
  }
  // A READ of length 0 reads nothing (transmission.ts answers it without the device): weftd's own
  // client asks so whether a server is alive while a FLUSH waits on a slow disk (nbd/client.ts).
  if (req.lengthBytes === 0 && req.type !== P.CMD_READ) return reject(P.NBD_EINVAL, `${name} of length 0`);
  const tooLong = checkMaximum(req, limits.maxRequestBytes);
  if (tooLong) return tooLong;
  if (req.offsetBytes + req.lengthBytes > limits.sizeBytes) {
    // The spec asks for ENOSPC on writes past the end and EINVAL on everything else.
    const error = req.type === P.CMD_WRITE || req.type === P.CMD_WRITE_ZEROES ? P.NBD_ENOSPC : P.NBD_EINVAL;
    return reject(error, `${name} past the end of the export (${limits.sizeBytes} bytes)`);
  }
  return undefined;
}

/** Command flags the client may not use because their transmission flag was not advertised. */
function withheldFlags(advertised: number): number {
  let withheld = 0;
  if ((advertised & P.FLAG_SEND_FUA) === 0) withheld |= P.CMD_FLAG_FUA;
  if ((advertised & P.FLAG_SEND_DF) === 0) withheld |= P.CMD_FLAG_DF;
  if ((advertised & P.FLAG_SEND_FAST_ZERO) === 0) withheld |= P.CMD_FLAG_FAST_ZERO;
  return withheld;
}

/**
 * READ and WRITE must not exceed the advertised maximum block size: their data is held in memory.
 * WRITE_ZEROES is exempt although the spec limits it too: nbdcopy (libnbd 1.14) sends larger ones,
 * and as qemu-nbd and nbdkit do, we accept them; they carry no payload.
 */
function checkMaximum(req: NbdRequest, maxRequestBytes: number): Rejection | undefined {
  const limited = req.type === P.CMD_READ || req.type === P.CMD_WRITE;
  if (!limited || req.lengthBytes <= maxRequestBytes) return undefined;
  const reason = `${COMMAND_NAMES[req.type]} of ${req.lengthBytes} bytes exceeds the maximum of ${maxRequestBytes}`;
  // EOVERFLOW is reserved for a READ that cannot be sent unfragmented (NBD_CMD_FLAG_DF).
  const error = req.type === P.CMD_READ && (req.flags & P.CMD_FLAG_DF) !== 0 ? P.NBD_EOVERFLOW : P.NBD_EINVAL;
  return reject(error, reason);
}
