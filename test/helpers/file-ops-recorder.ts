// A test layer under the engine's file calls (store/file-io's setFileOps seam): it records every
// write and sync by file path, in order, and can hold asynchronous calls (a pool write of more than
// 128 KiB, an fdatasync) until the test releases them, to stop the engine at an exact moment.

import * as fs from 'fs';
import { setFileOps, writevSpansThrough, type FileOps } from '../../fabric/store/file-io';
import { totalBytes, type Pieces } from '../../fabric/pieces';

export type FileCall = 'write' | 'fdatasync' | 'fsync' | 'ftruncate';

export interface FileEvent {
  call: FileCall;
  /**
   * 'start' when the call reaches the file system (a held call: when it is released), 'done' when it
   * completed (right after 'start' for synchronous calls).
   */
  phase: 'start' | 'done';
  file: string;
  /** Writes: where, and how many bytes. */
  position?: number;
  bytes?: number;
}

/** Holds the matching asynchronous calls while closed; release() lets them (and later ones) run. */
export class Gate {
  private readonly held: (() => void)[] = [];
  private readonly waiters: { count: number; resolve: () => void }[] = [];
  private open = false;

  constructor(readonly matches: (call: FileCall, file: string) => boolean) {}

  /** Resolves once count calls are held. */
  whenHeld(count = 1): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push({ count, resolve });
      this.wakeWaiters();
    });
  }

  release(): void {
    this.open = true;
    for (const run of this.held.splice(0)) run();
  }

  /** Runs the call now, or keeps it until release(). */
  pass(run: () => void): void {
    if (this.open) return run();
    this.held.push(run);
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters.filter((w) => this.held.length >= w.count)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
}

export class FileOpsRecorder {
  readonly events: FileEvent[] = [];
  private readonly gates: Gate[] = [];
  private readonly below: FileOps;

  private constructor() {
    this.below = setFileOps(this.layer());
  }

  /** Puts a recorder under every pool and metadata file call until uninstall(). */
  static install(): FileOpsRecorder {
    return new FileOpsRecorder();
  }

  /** Puts the calls back as they were, after releasing every gate (no call stays held). */
  uninstall(): void {
    for (const gate of this.gates) gate.release();
    setFileOps(this.below);
  }

  /** A closed gate for the asynchronous calls that match (writes over 128 KiB, fdatasync). */
  hold(matches: (call: FileCall, file: string) => boolean): Gate {
    const gate = new Gate(matches);
    this.gates.push(gate);
    return gate;
  }

  /** The events from index `from` on that match. */
  since(from: number, call: FileCall, file: FileMatch, phase: FileEvent['phase'] = 'done'): FileEvent[] {
    return this.events.slice(from).filter((e) => matches(e, call, file, phase));
  }

  /** Index of the first event from index `from` on that matches, or -1. */
  find(from: number, call: FileCall, file: FileMatch, phase: FileEvent['phase'] = 'done'): number {
    if (from < 0) return -1;
    return this.events.findIndex((e, i) => i >= from && matches(e, call, file, phase));
  }

  private layer(): FileOps {
    const syncCall = <T>(call: FileCall, fd: number, run: () => T, position?: number, bytes?: number): T => {
      const file = pathOf(fd);
      this.events.push({ call, phase: 'start', file, position, bytes });
      const result = run();
      this.events.push({ call, phase: 'done', file, position, bytes });
      return result;
    };
    const asyncCall = (call: FileCall, fd: number, run: (done: () => void) => void, position?: number, bytes?: number): void => {
      const file = pathOf(fd);
      const start = () => {
        this.events.push({ call, phase: 'start', file, position, bytes });
        run(() => this.events.push({ call, phase: 'done', file, position, bytes }));
      };
      const gate = this.gates.find((g) => g.matches(call, file));
      if (gate) gate.pass(start);
      else start();
    };
    return {
      readSync: (fd, buf, offset, length, position) => this.below.readSync(fd, buf, offset, length, position), // reads are not recorded
      read: (fd, buf, offset, length, position, callback) => this.below.read(fd, buf, offset, length, position, callback),
      writeSync: (fd, buf, offset, length, position) => syncCall('write', fd, () => this.below.writeSync(fd, buf, offset, length, position), position, length),
      writevSync: (fd, pieces: Pieces, position) => syncCall('write', fd, () => this.below.writevSync(fd, pieces, position), position, totalBytes(pieces)),
      writev: (fd, pieces, position, callback) =>
        asyncCall(
          'write',
          fd,
          (done) =>
            this.below.writev(fd, pieces, position, (err, written) => {
              done();
              callback(err, written);
            }),
          position,
          totalBytes(pieces),
        ),
      writevSpans(fd, pieces, position, spanBytes, callback) {
        writevSpansThrough(this, fd, pieces, position, spanBytes).then(() => callback(null), callback); // each span recorded
      },
      fdatasync: (fd, callback) =>
        asyncCall('fdatasync', fd, (done) =>
          this.below.fdatasync(fd, (err) => {
            done();
            callback(err);
          }),
        ),
      fsyncSync: (fd) => syncCall('fsync', fd, () => this.below.fsyncSync(fd)),
      ftruncateSync: (fd, length) => syncCall('ftruncate', fd, () => this.below.ftruncateSync(fd, length)),
    };
  }
}

/** A file's path, or a test of it. */
export type FileMatch = string | ((file: string) => boolean);

function matches(event: FileEvent, call: FileCall, file: FileMatch, phase: FileEvent['phase']): boolean {
  return event.call === call && event.phase === phase && (typeof file === 'string' ? event.file === file : file(event.file));
}

function pathOf(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}
