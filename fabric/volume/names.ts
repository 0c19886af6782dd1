// Names of volumes and snapshots (and of classes and nodes, which follow the same rule). They appear
// in NBD export names ("VOL@SNAP"), file-like places and metric labels, so they keep to a safe alphabet.

import { invalidArgument } from '../errors';

/** '@' and '/' never: exports are named VOLUME@SNAPSHOT. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** What a valid name looks like, for error messages. */
export const NAME_RULE = "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit";

/** Whether value is 1-63 of [a-zA-Z0-9._-], starting with a letter or digit. */
export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value);
}

/** Throws INVALID_ARGUMENT unless name is a valid name. */
export function validateName(what: 'volume' | 'snapshot', name: string): void {
  if (!isValidName(name)) throw invalidArgument(`invalid ${what} name ${JSON.stringify(name)}: ${NAME_RULE}`);
}

/**
 * The names the CSI driver gives the hidden snapshots it clones volumes from ("csi-clone." and 16
 * hex digits), which it deletes with the source volume: not for a user's snapshot.
 */
export const CSI_CLONE_SNAPSHOT = /^csi-clone\.[0-9a-f]{16}$/;
