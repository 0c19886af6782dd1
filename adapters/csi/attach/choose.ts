// Picks this node's attach method once, at start: kernel NBD where the nbd module and nbd-client
// exist, else nbdfuse + a loop device; logs which and why. Fails clearly when neither can work.
// New attachments use the method picked; one made before (by an earlier run, which may have picked
// the other: the nbd module loaded since, or gone) is checked, grown and undone by its own method.

import type { Logger } from '../../../fabric/logger';
import { failedPrecondition } from '../../../fabric/errors';
import type { AttachMethod, Attacher, Attachment, AttachRequest } from './attacher';
import { kernelNbdSupport, KernelNbdAttacher } from './kernel-nbd';
import { nbdFuseLoopSupport, NbdFuseLoopAttacher } from './nbdfuse-loop';

export async function chooseAttacher(logger: Logger): Promise<Attacher> {
  const kernel = await kernelNbdSupport();
  if (kernel.usable) {
    logger.info({ method: 'kernel-nbd', reason: kernel.reason }, 'attach method chosen');
    return new EachByItsMethod('kernel-nbd');
  }
  const fuse = await nbdFuseLoopSupport();
  if (fuse.usable) {
    logger.info({ method: 'nbdfuse-loop', reason: `kernel-nbd unusable (${kernel.reason}); ${fuse.reason}` }, 'attach method chosen');
    return new EachByItsMethod('nbdfuse-loop');
  }
  throw failedPrecondition(`no attach method works on this node: kernel-nbd: ${kernel.reason}; nbdfuse-loop: ${fuse.reason}`);
}

/** Attaches with one method; everything else an attachment asks goes to the method that made it. */
export class EachByItsMethod implements Attacher {
  private readonly methods: Record<AttachMethod, Attacher>;

  /** sysBlock: where the kernel lists block devices (a test's own directory in tests). */
  constructor(
    readonly method: AttachMethod,
    sysBlock?: string,
  ) {
    this.methods = { 'kernel-nbd': new KernelNbdAttacher(sysBlock), 'nbdfuse-loop': new NbdFuseLoopAttacher() };
  }

  attach(request: AttachRequest, workDir: string): Promise<Attachment> {
    return this.methods[this.method].attach(request, workDir);
  }

  detach(attachment: Attachment): Promise<void> {
    return this.of(attachment).detach(attachment);
  }

  /** A crash in an attach of either method: each method's leftovers are undone. */
  async clear(workDir: string): Promise<void> {
    for (const attacher of Object.values(this.methods)) await attacher.clear(workDir);
  }

  isHealthy(attachment: Attachment): Promise<boolean> {
    return this.of(attachment).isHealthy(attachment);
  }

  reattach(attachment: Attachment, sizeBytes: number): Promise<Attachment> {
    return this.of(attachment).reattach(attachment, sizeBytes);
  }

  growOnline(attachment: Attachment, sizeBytes: number): Promise<boolean> {
    return this.of(attachment).growOnline(attachment, sizeBytes);
  }

  /** New attachments use the method picked: its bound is the node's. */
  maxAttachments(): Promise<number> {
    return this.methods[this.method].maxAttachments();
  }

  private of(attachment: Attachment): Attacher {
    return this.methods[attachment.method] ?? this.methods[this.method];
  }
}
