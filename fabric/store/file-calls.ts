// File calls Node does not offer, from the native module (fabric/store/native/file-calls.c).

import { loadNativeModule } from '../native';

const native = loadNativeModule<{
  tryLockExclusive(fd: number): boolean;
  dropCachedPages(fd: number, offset: number, length: number): void;
}>('weft_file_calls');

/** flock(fd, LOCK_EX | LOCK_NB): false while another open file holds the lock. */
export function tryLockExclusive(fd: number): boolean {
  return native.tryLockExclusive(fd);
}

/** posix_fadvise(POSIX_FADV_DONTNEED) of the range: its clean cached pages go (dirty ones are written back first, and stay). */
export function dropCachedPages(fd: number, offset: number, length: number): void {
  native.dropCachedPages(fd, offset, length);
}
