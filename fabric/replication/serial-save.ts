// One save of a small file at a time: changes made while one runs go into the next, which every
// caller that asked meanwhile shares (a burst of marks costs one or two fsyncs, not one each).

import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicAsync } from '../store/file-io';

/** Writes value as the whole of file, durably (its directory made if need be). */
export async function writeJsonFile(file: string, value: unknown): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomicAsync(file, Buffer.from(JSON.stringify(value)), path.dirname(file));
}

export class SerialSave {
  private queued: Promise<void> | undefined;
  private running: Promise<void> | undefined;

  /** write: writes what the state is when it is called, durably. */
  constructor(private readonly write: () => Promise<void>) {}

  /** Resolves once a save that began after this call is on disk. */
  save(): Promise<void> {
    this.queued ??= (async () => {
      await this.running?.catch(() => undefined);
      this.queued = undefined; // changes from here on need the next save
      this.running = this.write();
      await this.running;
    })();
    return this.queued;
  }

  /** Resolves once no save is running. */
  async idle(): Promise<void> {
    await this.queued?.catch(() => undefined);
    await this.running?.catch(() => undefined);
  }
}
