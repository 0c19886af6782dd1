// What this node's copy of a replicated volume received while other copies were away. For each
// absent copy it keeps the blocks written here since that copy left (or that it needs a full copy),
// on disk before a write that marks a new block completes. The primary tells every copy in step
// when one leaves (ReplicatedDevice), so that whichever of them serves next (after a failover, or a
// restart of the primary) knows what a returning copy lacks and resyncs only that.
//
// An absent copy with no entry here needs a full copy: a log that is lost or damaged costs a full
// resync, never a missed block. An entry is only ever merged into (a stale one, left by an earlier
// absence that could not be forgotten everywhere, makes a resync copy more, not less).

import fs from 'node:fs';
import type { Logger } from '../logger';
import { totalBytes, type Pieces } from '../pieces';
import type { VolumeLayer, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughLayer } from '../volume/pass-through-device';
import { DirtyMap } from './dirty-map';
import { SerialSave, writeJsonFile } from './serial-save';

/** What one absent copy lacks. */
export interface Absence {
  /** It lacks what is not known here: only a full copy brings it back. */
  full: boolean;
  /** The blocks written here since it left. */
  map: DirtyMap;
}

/**
 * An entry whose map would encode larger than this needs a full copy (thin) instead: more to copy,
 * never less. The primary tells no larger map (a node takes messages of 64 MiB), every save rewrites
 * the whole log, and one much larger would not fit in a string at all (writes spread over ~12 TiB).
 */
export const MAX_ABSENCE_MAP_BYTES = 32 * 1024 * 1024;

interface LogFile {
  absences: Record<string, { full: boolean; map: string }>; // map: DirtyMap.encode(), base64
}

export class AbsenceLog {
  private readonly absences = new Map<string, Absence>();
  private readonly saver = new SerialSave(() => this.write());
  /** Marks made (each one that grew a map counts), and how many of them a successful save holds. */
  private marked = 0;
  private savedMarks = 0;

  private constructor(readonly file: string, private readonly maxMapBytes: number) {}

  /** The log in file; a missing file is an empty log, and so is a damaged one (logged): the absent copies then get full copies. */
  static load(file: string, logger: Logger, maxMapBytes = MAX_ABSENCE_MAP_BYTES): AbsenceLog {
    const log = new AbsenceLog(file, maxMapBytes);
    try {
      const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as LogFile;
      for (const [id, entry] of Object.entries(saved.absences)) {
        log.absences.set(id, { full: entry.full === true, map: DirtyMap.decode(Buffer.from(entry.map, 'base64')) });
      }
    } catch (err) {
      log.absences.clear();
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ file, err }, 'the absence log is damaged: copies away now will get full copies');
    }
    return log;
  }

  /** The copies it tracks. */
  tracked(): string[] {
    return [...this.absences.keys()];
  }

  /** What it knows the copy lacks (a copy of it), if it tracks it. */
  absence(id: string): Absence | undefined {
    const entry = this.absences.get(id);
    return entry && { full: entry.full, map: entry.map.clone() };
  }

  /** Tracks the copy from now on, with what it is known to lack so far merged in; resolves once on disk. */
  track(id: string, absence: Absence): Promise<void> {
    const entry = this.absences.get(id);
    if (entry) {
      entry.full ||= absence.full;
      entry.map.merge(absence.map);
      this.capped(entry);
    } else {
      this.absences.set(id, this.capped({ full: absence.full, map: absence.map.clone() }));
    }
    return this.save();
  }

  /** The copy is back in step: no more tracking of it. */
  forget(id: string): Promise<void> {
    return this.absences.delete(id) ? this.save() : Promise.resolve();
  }

  /** Forgets every copy (this copy is new). */
  clear(): Promise<void> {
    if (this.absences.size === 0) return Promise.resolve();
    this.absences.clear();
    return this.save();
  }

  /**
   * A change of the range reached this copy: marked for every absent copy; a promise when that has
   * to reach the disk first. Also when the range was marked already but that mark is not on disk
   * yet (its save still runs, or failed): a change acknowledged before would be lost with a crash.
   */
  record(offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    if (this.absences.size === 0) return undefined;
    for (const entry of this.absences.values()) {
      if (entry.full) continue;
      const before = entry.map.blocks;
      entry.map.mark(offsetBytes, lengthBytes);
      const grew = entry.map.blocks !== before;
      if (this.capped(entry).full || grew) this.marked++;
    }
    if (this.savedMarks === this.marked) return undefined;
    const upTo = this.marked;
    return this.save().then(() => {
      this.savedMarks = Math.max(this.savedMarks, upTo);
    });
  }

  /** The volume's copy here is gone. */
  async remove(): Promise<void> {
    this.absences.clear();
    await this.saver.idle();
    await fs.promises.rm(this.file, { force: true });
  }

  /** The entry, made one of a full copy if its map has grown past the cap. */
  private capped(entry: Absence): Absence {
    if (!entry.full && entry.map.encodedBytesAtMost > this.maxMapBytes) {
      entry.full = true;
      entry.map = new DirtyMap();
    }
    return entry;
  }

  private save(): Promise<void> {
    return this.saver.save();
  }

  private async write(): Promise<void> {
    const saved: LogFile = { absences: {} };
    for (const [id, entry] of this.absences) saved.absences[id] = { full: entry.full, map: entry.map.encode().toString('base64') };
    await writeJsonFile(this.file, saved);
  }
}

/**
 * A volume's copy as changes reach it, from this node's primary or another's: each change is marked
 * in the absence log, and completes once the mark is on disk too.
 */
export class AbsenceTrackingLayer extends PassThroughLayer {
  constructor(below: VolumeLayer, readonly log: AbsenceLog) {
    super(below);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.tracked(offsetBytes, Buffer.isBuffer(data) ? data.length : totalBytes(data), this.below.write(offsetBytes, data, fua));
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.tracked(offsetBytes, lengthBytes, this.below.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.tracked(offsetBytes, lengthBytes, this.below.writeZeroes(offsetBytes, lengthBytes, options));
  }

  private tracked(offsetBytes: number, lengthBytes: number, change: Promise<void>): Promise<void> {
    const saved = this.log.record(offsetBytes, lengthBytes);
    return saved ? Promise.all([change, saved]).then(() => undefined) : change;
  }
}
