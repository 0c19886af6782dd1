// Paging of ListVolumes and ListSnapshots. Entries are sorted by id; a next_token says "after this
// id", so deleting or adding entries between calls neither repeats nor skips the others. A token
// this driver did not make is ABORTED, as the spec says.

import { aborted } from './errors';
import { checkMaxEntries } from './validate';

const TOKEN_PREFIX = 'after:';

export interface Page<T> {
  entries: T[];
  next_token: string;
}

/** The page of items (any order) after starting_token, at most max_entries long (0: all). */
export function page<T>(items: T[], idOf: (item: T) => string, request: { max_entries: number; starting_token: string }): Page<T> {
  const maxEntries = checkMaxEntries(request.max_entries);
  const after = request.starting_token ? tokenKey(request.starting_token) : undefined;
  const sorted = [...items].sort((a, b) => compare(idOf(a), idOf(b)));
  const rest = after === undefined ? sorted : sorted.filter((item) => compare(idOf(item), after) > 0);
  if (!maxEntries || rest.length <= maxEntries) return { entries: rest, next_token: '' };
  const entries = rest.slice(0, maxEntries);
  return { entries, next_token: TOKEN_PREFIX + idOf(entries[entries.length - 1]) };
}

function tokenKey(token: string): string {
  if (!token.startsWith(TOKEN_PREFIX) || token.length === TOKEN_PREFIX.length) {
    throw aborted(`starting_token "${token}" is not one this driver gave out; list again from the start`);
  }
  return token.slice(TOKEN_PREFIX.length);
}

/** Byte order, not locale order: the same on every node and every run. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
