// Picks this node's attach method once, at start: kernel NBD where the nbd module and nbd-client
// exist, else nbdfuse + a loop device; logs which and why. Fails clearly when neither can work.

import type { Logger } from '../../../fabric/logger';
import { failedPrecondition } from '../../../fabric/errors';
import type { Attacher } from './attacher';
import { kernelNbdSupport, KernelNbdAttacher } from './kernel-nbd';
import { nbdFuseLoopSupport, NbdFuseLoopAttacher } from './nbdfuse-loop';

export async function chooseAttacher(logger: Logger): Promise<Attacher> {
  const kernel = await kernelNbdSupport();
  if (kernel.usable) {
    logger.info({ method: 'kernel-nbd', reason: kernel.reason }, 'attach method chosen');
    return new KernelNbdAttacher();
  }
  const fuse = await nbdFuseLoopSupport();
  if (fuse.usable) {
    logger.info({ method: 'nbdfuse-loop', reason: `kernel-nbd unusable (${kernel.reason}); ${fuse.reason}` }, 'attach method chosen');
    return new NbdFuseLoopAttacher();
  }
  throw failedPrecondition(`no attach method works on this node: kernel-nbd: ${kernel.reason}; nbdfuse-loop: ${fuse.reason}`);
}
