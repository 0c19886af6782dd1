// A copy's record of its primary's activity log: the extents where the primary said its writes may
// leave the copies unequal, told to every copy in step before a write there is sent (activity-log.ts).
// If that primary dies for good, the copy promoted in its place finds here what its own activity
// log cannot say (it was not the primary): it makes the copies in step equal there before it serves.
//
// Notices may overtake one another on the way; one older than what the file holds, by the primary's
// (epoch, revision), changes nothing.

import { RecordFile } from '../store/record-file';
import { areExtents, extentRegions, hasExtents } from './activity-log';
import type { DirtyMap } from './dirty-map';
import { SerialSave } from './serial-save';

interface PeerActivityFile {
  epoch: number;
  revision: number;
  extents: number[];
}

export class PeerActivity {
  private state: PeerActivityFile;
  /** What the file holds (a save that failed left it older than state). */
  private durable: PeerActivityFile;
  private readonly saver = new SerialSave(async () => {
    const state = this.state;
    await this.recordFile.save(state);
    if (newer(state, this.durable)) this.durable = state;
  });

  private constructor(private readonly recordFile: RecordFile, state: PeerActivityFile) {
    this.state = state;
    this.durable = state;
  }

  /** The record in file; a missing or damaged one is empty at epoch 0. */
  static load(file: string): PeerActivity {
    const { record, value } = RecordFile.open(file, hasExtents);
    const saved = value as Partial<PeerActivityFile> | undefined;
    const valid = saved && [saved.epoch, saved.revision].every(Number.isSafeInteger) && areExtents(saved.extents);
    if (!valid) return new PeerActivity(record, { epoch: 0, revision: 0, extents: [] });
    return new PeerActivity(record, { epoch: saved.epoch as number, revision: saved.revision as number, extents: saved.extents as number[] });
  }

  /** The epoch of the primary whose log it holds (0: none). */
  get epoch(): number {
    return this.state.epoch;
  }

  /** The primary at epoch has these extents in its log, at its revision: on disk before it resolves, unless older than what it holds. */
  async record(epoch: number, revision: number, extents: readonly number[]): Promise<void> {
    const notice = { epoch, revision, extents: [...extents] };
    if (newer(notice, this.state)) this.state = notice;
    // Once the file holds this notice or a newer one; not before, even for a notice seen already.
    if (newer(notice, this.durable)) await this.saver.save();
  }

  /** The regions it names, as a map of blocks. */
  regions(): DirtyMap {
    return extentRegions(this.state.extents);
  }

  /** The volume is gone. */
  async remove(): Promise<void> {
    await this.saver.idle();
    this.recordFile.remove();
  }
}

function newer(a: PeerActivityFile, b: PeerActivityFile): boolean {
  return a.epoch > b.epoch || (a.epoch === b.epoch && a.revision > b.revision);
}
