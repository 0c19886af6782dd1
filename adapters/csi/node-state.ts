// What the CSI node service has done on this node, one small JSON file per volume in its state
// dir, written atomically before and after each step, so that a restarted weftd finds every
// attachment and mount it made, including those a crash interrupted.

import * as fs from 'fs';
import * as path from 'path';
import { isValidName } from '../../fabric/volume/names';
import type { Attachment } from './attach/attacher';
import type { AccessModeName } from './messages';
import type { FsType } from './validate';
import type { Workload } from './workload';

export interface Publication {
  targetPath: string;
  readOnly: boolean;
  workload: Workload;
  /**
   * A read-only publication of block access: the read-only loop device over the staged device that
   * it shows (a bind mount's "ro" does not stop writes through a device node).
   */
  readOnlyDevice?: string;
}

/** attaching: the stage has begun (it may hold an attachment); unstaging: its undoing has begun. */
export type StagePhase = 'attaching' | 'staged' | 'unstaging';

export interface VolumeState {
  volume: string;
  stagingPath: string;
  access: 'mount' | 'block';
  /** Mount access: the filesystem and the mount flags the CO asked for. */
  fsType?: FsType;
  mountFlags: string[];
  accessMode: AccessModeName;
  phase: StagePhase;
  attachment?: Attachment;
  publications: Publication[];
}

const SUFFIX = '.json';

export class NodeStateStore {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  list(): VolumeState[] {
    return fs
      .readdirSync(this.dir)
      .filter((file) => file.endsWith(SUFFIX))
      .map((file) => this.read(path.join(this.dir, file)));
  }

  get(volume: string): VolumeState | undefined {
    const file = this.file(volume);
    return fs.existsSync(file) ? this.read(file) : undefined;
  }

  /** Replaces the volume's state: a new file, synced, renamed over the old one, directory synced. */
  put(state: VolumeState): void {
    const file = this.file(state.volume);
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, JSON.stringify(state, null, 2) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    this.syncDir();
  }

  remove(volume: string): void {
    fs.rmSync(this.file(volume), { force: true });
    this.syncDir();
  }

  /** A directory private to the volume's attachment (the attacher's work dir). */
  workDir(volume: string): string {
    return path.join(this.dir, 'attach', safeName(volume));
  }

  /**
   * Removes the volume's work dir once its attachment is gone. Only when empty: what an attacher
   * left inside is not ours to delete, and stays there to be looked at. False when it stays.
   */
  removeWorkDir(volume: string): boolean {
    try {
      fs.rmdirSync(this.workDir(volume));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
      if ((error as NodeJS.ErrnoException).code === 'ENOTEMPTY') return false;
      throw error;
    }
  }

  private file(volume: string): string {
    return path.join(this.dir, safeName(volume) + SUFFIX);
  }

  private read(file: string): VolumeState {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as VolumeState;
  }

  private syncDir(): void {
    const fd = fs.openSync(this.dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** A volume name as part of a path here: never one that could lead out of the state directory. */
function safeName(volume: string): string {
  if (!isValidName(volume)) throw new Error(`not a volume name: ${JSON.stringify(volume)}`);
  return volume;
}
