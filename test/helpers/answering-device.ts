// A test layer that gives the capability answers it is told to and passes everything else down,
// as an nbdkit filter can change what a plugin advertises. Told canFastZero, it also honours
// fastZero by refusing at once (ENOTSUP): it does not know whether the layers below zero fast.

import { IoError } from '../../fabric/errors';
import type { BlockDevice, WriteZeroesOptions } from '../../fabric/volume/block-device';
import { PassThroughDevice } from '../../fabric/volume/pass-through-device';

export type Capability = 'canMultiConn' | 'canFua' | 'canTrim' | 'canZero' | 'canFastZero';
export type Answers = Partial<Record<Capability, boolean>>;

export class AnsweringDevice extends PassThroughDevice {
  constructor(below: BlockDevice, private readonly answers: Answers) {
    super(below);
  }

  override canMultiConn(): boolean {
    return this.answers.canMultiConn ?? super.canMultiConn();
  }

  override canFua(): boolean {
    return this.answers.canFua ?? super.canFua();
  }

  override canTrim(): boolean {
    return this.answers.canTrim ?? super.canTrim();
  }

  override canZero(): boolean {
    return this.answers.canZero ?? super.canZero();
  }

  override canFastZero(): boolean {
    return this.answers.canFastZero ?? super.canFastZero();
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    if (options.fastZero) return Promise.reject(new IoError('ENOTSUP', 'this test layer never zeroes fast'));
    return super.writeZeroes(offsetBytes, lengthBytes, options);
  }
}
