// How a volume becomes a local block device on this node. One interface, several methods (kernel
// NBD where the nbd module exists; nbdfuse + a loop device where it does not), picked at start.

export type AttachMethod = 'kernel-nbd' | 'nbdfuse-loop';

/** A volume attached on this node; persisted so that a restarted weftd can find it again. */
export interface Attachment {
  volume: string;
  method: AttachMethod;
  /** The block device, e.g. /dev/loop3 or /dev/nbd0. */
  devicePath: string;
  /** The NBD URI the device is connected to. */
  nbdUri: string;
  /** Method-specific facts needed to detach (FUSE mount dir, pid file, ...). */
  details: Record<string, string>;
}

export interface Attacher {
  readonly method: AttachMethod;
  /** Connects the volume and returns its block device. workDir is private to this attachment. */
  attach(volume: string, nbdUri: string, workDir: string): Promise<Attachment>;
  /** Undoes attach(); succeeds if it is already (partly) undone. */
  detach(attachment: Attachment): Promise<void>;
  /** True if the device still works (its NBD connection and helper processes are alive). */
  isHealthy(attachment: Attachment): Promise<boolean>;
}
