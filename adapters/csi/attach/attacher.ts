// How a volume becomes a local block device on this node. One interface, several methods (kernel
// NBD where the nbd module exists; nbdfuse + a loop device where it does not), picked at start.

import { invalidArgument } from '../../../fabric/errors';

export type AttachMethod = 'kernel-nbd' | 'nbdfuse-loop';

/** A volume attached on this node; persisted so that a restarted weftd can find it again. */
export interface Attachment {
  volume: string;
  method: AttachMethod;
  /** The block device, e.g. /dev/loop3 or /dev/nbd0. */
  devicePath: string;
  /** The NBD URI the device is connected to. */
  nbdUri: string;
  /**
   * Method-specific facts needed to find, check and detach it after a weftd restart (helper pids,
   * FUSE mount dir, ...). Every method records `workDir`, the directory given to attach().
   */
  details: Record<string, string>;
}

/** What to attach: a volume, the NBD URI weftd serves it at, and its size now. */
export interface AttachRequest {
  volume: string;
  nbdUri: string;
  sizeBytes: number;
}

export interface Attacher {
  readonly method: AttachMethod;
  /** Connects the volume and returns its block device. workDir is private to this attachment. */
  attach(request: AttachRequest, workDir: string): Promise<Attachment>;
  /** Undoes attach(); succeeds if it is already (partly) undone. */
  detach(attachment: Attachment): Promise<void>;
  /** Undoes whatever an attach() in workDir that never returned (a crash) left there; succeeds if nothing. */
  clear(workDir: string): Promise<void>;
  /** True if the device still works (its NBD connection and helper processes are alive). */
  isHealthy(attachment: Attachment): Promise<boolean>;
  /**
   * Detaches what is left of the attachment and attaches the same volume again in the same work dir.
   * Whatever is mounted on the device must be unmounted first.
   */
  reattach(attachment: Attachment, sizeBytes: number): Promise<Attachment>;
  /**
   * Makes the attached device show the volume's new size while it stays attached (and mounted).
   * Resolves false where the method cannot (an NBD client learns the size only when it connects):
   * then only reattach() shows it.
   */
  growOnline(attachment: Attachment, sizeBytes: number): Promise<boolean>;
  /** How many volumes this node can hold attached with this method at most (NodeGetInfo's max_volumes_per_node). */
  maxAttachments(): Promise<number>;
}

/** The most attachments a node takes whatever the method: each holds a device and a helper process. */
export const MAX_ATTACHMENTS = 128;

/** Whether an attach method can work on this node, and why or why not (for the log). */
export interface MethodSupport {
  usable: boolean;
  reason: string;
}

/** The work dir an attachment was made in (see Attachment.details). */
export function workDirOf(attachment: Attachment): string {
  const workDir = attachment.details.workDir;
  if (!workDir) throw invalidArgument(`the attachment of volume ${attachment.volume} has no workDir in its details`);
  return workDir;
}
