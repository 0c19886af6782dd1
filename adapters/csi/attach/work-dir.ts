// The life of an attachment in its private work dir, the same for every method: reuse a healthy one,
// clear what a half-done attempt left, connect, and record the result in the work dir.

import { mkdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '../../../fabric/errors';
import type { AttachRequest, Attachment } from './attacher';

const RECORD_FILE = 'attachment.json';

/** What a method does in a work dir; attachInWorkDir() and the method's detach() drive it. */
export interface WorkDirSteps {
  isHealthy(attachment: Attachment): Promise<boolean>;
  /** Connects the volume in an empty (or cleared) work dir. */
  connect(request: AttachRequest, workDir: string): Promise<Attachment>;
  /** Removes whatever exists of an attachment in the work dir; succeeds if nothing does. */
  teardown(workDir: string): Promise<void>;
}

/**
 * attach() for every method: a healthy attachment of the same volume in workDir is returned as it is;
 * anything else found there is torn down first; a failed connect leaves nothing behind.
 */
export async function attachInWorkDir(steps: WorkDirSteps, request: AttachRequest, workDir: string): Promise<Attachment> {
  await mkdir(workDir, { recursive: true });
  const dir = await realpath(workDir); // one spelling: helpers are found by the paths on their command lines
  const existing = await readRecord(dir);
  if (existing && (await steps.isHealthy(existing))) return sameVolume(existing, request);
  await steps.teardown(dir);
  try {
    const attachment = await steps.connect(request, dir);
    await writeRecord(dir, attachment);
    return attachment;
  } catch (error) {
    await steps.teardown(dir).catch(() => undefined); // the connect error is the one to report
    throw error;
  }
}

/**
 * Removes whatever an attach() in workDir left, whether or not it got as far as its record (a crash
 * in the middle of one leaves helpers and devices with no attachment to name them).
 */
export async function clearWorkDir(steps: WorkDirSteps, workDir: string): Promise<void> {
  const dir = await realpath(workDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (dir !== undefined) await steps.teardown(dir);
}

function sameVolume(existing: Attachment, { volume, nbdUri }: AttachRequest): Attachment {
  if (existing.volume === volume && existing.nbdUri === nbdUri) return existing;
  throw failedPrecondition(
    `work dir ${existing.details.workDir} already holds volume ${existing.volume} from ${existing.nbdUri}; detach it first`,
  );
}

/** Written whole or not at all (rename), so that a crash never leaves half a record. */
async function writeRecord(workDir: string, attachment: Attachment): Promise<void> {
  const temporary = path.join(workDir, `${RECORD_FILE}.tmp`);
  await writeFile(temporary, JSON.stringify(attachment, null, 2));
  await rename(temporary, path.join(workDir, RECORD_FILE));
}

/** The attachment recorded in workDir by a successful attach, if any. */
export async function readRecord(workDir: string): Promise<Attachment | undefined> {
  try {
    return JSON.parse(await readFile(path.join(workDir, RECORD_FILE), 'utf8')) as Attachment;
  } catch {
    return undefined; // none yet
  }
}

export async function removeRecord(workDir: string): Promise<void> {
  for (const file of [RECORD_FILE, `${RECORD_FILE}.tmp`]) await rm(path.join(workDir, file), { force: true });
}
