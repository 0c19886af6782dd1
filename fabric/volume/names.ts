// Names of volumes and snapshots. They appear in NBD export names ("VOL@SNAP"), file-like places
// and metric labels, so they are kept to a safe alphabet.

import { invalidArgument } from '../errors';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

/** Throws INVALID_ARGUMENT unless name is 1-63 of [a-zA-Z0-9._-], starting with a letter or digit. */
export function validateName(what: 'volume' | 'snapshot', name: string): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw invalidArgument(
      `invalid ${what} name ${JSON.stringify(name)}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}
