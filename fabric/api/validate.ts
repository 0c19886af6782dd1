// Checks of request fields, shared by the API server (before it calls the engine) and the CLI
// (before it calls the server). Each failure is an INVALID_ARGUMENT that names the field.

import { invalidArgument } from '../errors';
import { isValidName, NAME_RULE } from '../volume/names';

/** The most copies a volume may ask for (the wire's field is 32 bits: a larger number would wrap round to a small one). */
export const MAX_REPLICAS = 999;

/** Volume, snapshot, class and node names. */
export function checkName(field: string, value: string | undefined | null): string {
  if (!value) throw invalidArgument(`${field} is required`);
  if (!isValidName(value)) throw invalidArgument(`${field} "${value}" is invalid: ${NAME_RULE}`);
  return value;
}

/** A volume, or a snapshot as VOLUME@SNAPSHOT (the names of NBD exports). */
export function checkExportName(field: string, value: string | undefined | null): string {
  const at = value ? value.indexOf('@') : -1;
  if (at < 0) return checkName(field, value);
  return `${checkName(`${field} (volume)`, value!.slice(0, at))}@${checkName(`${field} (snapshot)`, value!.slice(at + 1))}`;
}

/** An optional name: empty means "not given". */
export function checkOptionalName(field: string, value: string | undefined | null): string | undefined {
  return value ? checkName(field, value) : undefined;
}

export function checkSize(field: string, bytes: number | undefined | null): number {
  const size = checkOptionalSize(field, bytes);
  if (size === undefined) throw invalidArgument(`${field} must be greater than 0`);
  return size;
}

/** An optional size: 0 means "not given". */
export function checkOptionalSize(field: string, bytes: number | undefined | null): number | undefined {
  if (!bytes) return undefined;
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw invalidArgument(`${field} ${bytes} is invalid: use a whole number of bytes below 2^53`);
  }
  return bytes;
}
