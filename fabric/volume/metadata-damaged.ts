// The error of a data dir whose metadata (checkpoint or journal) cannot be read as it was written;
// thrown by the readers of those files and by Metadata.open().

/**
 * The data dir's metadata cannot be read as it was written: a file is missing, or fails its
 * checksum where a crash cannot explain it. weftd refuses to start and changes nothing;
 * `weftd --recover` tells what would be lost.
 */
export class MetadataDamaged extends Error {
  constructor(readonly file: string, readonly problem: string, readonly offset?: number) {
    super(
      `metadata ${file}${offset === undefined ? '' : ` at offset ${offset}`}: ${problem}. weftd will not start on it and has changed nothing; ` +
        'keep a copy of the data dir, then run `weftd --recover` with the same flags to see what would be lost',
    );
    this.name = 'MetadataDamaged';
  }
}
