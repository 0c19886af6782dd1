// Reading a data dir's metadata files as a start replays them: the checkpoint, then the chain of
// journals from its generation on, each read only if the one before it is complete.

import * as fs from 'fs';
import * as path from 'path';
import { Journal } from '../store/journal';
import { Checkpoint, checkpointPath, readCheckpoint } from './checkpoint-file';
import { decodeRecords, JournalRecord } from './journal-records';
import { MetadataDamaged } from './metadata-damaged';

/** Where the journals end before their last bytes: a crash cut them, and nothing there was acknowledged. */
export interface TornTail {
  file: string;
  offset: number;
  bytes: number;
  /** Later journals, whole, left out with it (records appended after the tail). */
  laterJournals?: string[];
}

/** What a data dir's metadata files hold, and the first problem that stops a normal start. */
export interface MetadataState {
  checkpoint?: Checkpoint;
  /** The journal files a start replays, in order: the checkpoint's own, then later ones. */
  journals: string[];
  /** Their records up to any problem or torn tail, in order. */
  records: JournalRecord[];
  /** Generation of the last journal replayed (where a start continues). */
  generation: number;
  /** Intact frames that the problem puts out of reach: what starting without them loses. */
  lostFrames: Buffer[];
  tornTail?: TornTail;
  problem?: MetadataDamaged;
}

export function journalPath(dir: string, generation: number): string {
  return path.join(dir, `journal-${generation}`);
}

/**
 * Reads the checkpoint and the journals from its generation on, and names the first problem that
 * stops a normal start. A journal is read only if the one before it is complete (read to its end,
 * and as long as the next one's BASE record says): otherwise nothing in it was acknowledged,
 * since a sync of a journal counts only once every older one is durable, and it is left out like
 * a torn tail. If one of them was synced all the same, records acknowledged are missing: damage.
 */
export function inspectMetadata(dir: string): MetadataState {
  const state: MetadataState = { journals: [], records: [], generation: 0, lostFrames: [] };
  const checkpointFile = checkpointPath(dir);
  if (!fs.existsSync(checkpointFile)) return { ...state, problem: new MetadataDamaged(checkpointFile, 'the checkpoint is missing') };
  let checkpoint: Checkpoint;
  try {
    checkpoint = readCheckpoint(checkpointFile);
  } catch (err) {
    if (err instanceof MetadataDamaged) return { ...state, problem: err };
    throw err;
  }
  state.checkpoint = checkpoint;
  state.generation = checkpoint.generation;
  let seq = checkpoint.baseSeq;
  /** Why the log ended before this journal, once it has. */
  let endedEarly: string | undefined;
  for (let generation = checkpoint.generation; ; generation++) {
    const file = journalPath(dir, generation);
    if (!fs.existsSync(file)) {
      if (generation === checkpoint.generation) {
        state.problem = new MetadataDamaged(file, `the journal named by the checkpoint (generation ${generation}) is missing`);
        return state;
      }
      // Journals are made one after another, and only those a checkpoint covers are dropped: one
      // missing before a later one was lost (a file deleted, a partial restore). The later ones are
      // read as after an incomplete journal: damage if one was synced, else a torn tail. Taken for
      // the end, they would be deleted at the next checkpoint with what they acknowledged.
      const next = nextJournalGeneration(dir, generation);
      if (next === undefined) return state;
      endedEarly ??= `${file} is missing`;
      state.tornTail ??= { file, offset: 0, bytes: 0 };
      generation = next - 1;
      continue;
    }
    const contents = Journal.read(file);
    const records = decodeRecords(contents.frames);
    const first = records[0];
    if (!endedEarly && first && (first.type !== 'base' || first.seq !== seq)) {
      endedEarly = `${journalPath(dir, generation - 1)} ends before record ${first.type === 'base' ? first.seq : '?'}, where this one begins`;
      state.tornTail = { file, offset: 0, bytes: contents.end };
    }
    if (endedEarly) {
      if (state.tornTail && state.tornTail.file !== file) (state.tornTail.laterJournals ??= []).push(file);
      for (const frame of contents.frames.concat(contents.framesAfterDamage)) state.lostFrames.push(frame);
      if (!state.problem && (contents.syncedUpTo > 0 || contents.damage)) {
        state.problem = new MetadataDamaged(file, `it was synced, but the journal before it is incomplete (${endedEarly})`);
      }
      continue;
    }
    state.journals.push(file);
    state.generation = generation;
    for (const record of records) {
      state.records.push(record);
      if (record.type !== 'sync' && record.type !== 'cancel') seq = record.seq;
    }
    if (contents.damage) {
      state.problem = new MetadataDamaged(contents.damage.file, contents.damage.reason, contents.damage.offset);
      for (const frame of contents.framesAfterDamage) state.lostFrames.push(frame);
      endedEarly = `${file} is damaged at offset ${contents.damage.offset}`;
    } else if (contents.tornTail) {
      state.tornTail = { file, ...contents.tornTail };
      endedEarly = `${file} ends torn at offset ${contents.tornTail.offset}`;
    }
  }
}

/** The lowest generation above `after` that has a journal file in dir, if any. */
function nextJournalGeneration(dir: string, after: number): number | undefined {
  const generations = fs.readdirSync(dir).flatMap((name) => {
    const match = /^journal-(\d+)$/.exec(name);
    return match && Number(match[1]) > after ? [Number(match[1])] : [];
  });
  return generations.length > 0 ? Math.min(...generations) : undefined;
}
