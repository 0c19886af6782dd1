// A pass-through layer over the engine's file calls (fabric/store/file-io.ts), like an nbdkit
// filter: a test layer extends it, overrides only the calls it changes, and is put in with install().

import { setFileOps, writevSpansThrough, type FileOps } from '../../fabric/store/file-io';
import type { Pieces } from '../../fabric/pieces';

export class FileOpsLayer implements FileOps {
  /** The calls this layer passes on to: node's fs, or another layer. */
  protected below!: FileOps;

  /** Puts this layer on top of the file calls in use in this process. */
  install(): this {
    this.below = setFileOps(this);
    return this;
  }

  /** Takes this layer out again (it must be the top one). */
  uninstall(): void {
    setFileOps(this.below);
  }

  readSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    return this.below.readSync(fd, buf, offset, length, position);
  }

  read(fd: number, buf: Buffer, offset: number, length: number, position: number, done: (err: NodeJS.ErrnoException | null, read: number) => void): void {
    this.below.read(fd, buf, offset, length, position, done);
  }

  writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    return this.below.writeSync(fd, buf, offset, length, position);
  }

  writevSync(fd: number, pieces: Pieces, position: number): number {
    return this.below.writevSync(fd, pieces, position);
  }

  writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    this.below.writev(fd, pieces, position, done);
  }

  /**
   * Through this layer's own writev, one span after another (weftd's native call does them all on
   * one thread): a layer that changes writes sees each span as weftd's writes it.
   */
  writevSpans(fd: number, pieces: Pieces, position: number, spanBytes: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    writevSpansThrough(this, fd, pieces, position, spanBytes).then(() => done(null), done);
  }

  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    this.below.fdatasync(fd, done);
  }

  fsyncSync(fd: number): void {
    this.below.fsyncSync(fd);
  }

  ftruncateSync(fd: number, length: number): void {
    this.below.ftruncateSync(fd, length);
  }
}
