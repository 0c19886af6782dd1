// The attachments weftd knows of (volume, node, device, method, workloads), as the CSI node service
// reports them: kept in memory and in one JSON file in the data dir, so that they survive restarts.

import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from 'pino';
import { WeftError } from '../errors';
import { writeFileAtomic } from '../store/file-io';

/**
 * Who uses an attached volume. Fields the orchestrator did not tell are empty or absent (records
 * written before a field existed lack it too).
 */
export interface AttachmentWorkload {
  /** "kubernetes", "nomad", "mesos" or "unknown". */
  orchestrator: string;
  podName?: string;
  podNamespace?: string;
  podUid?: string;
  /** The PersistentVolumeClaim the volume was provisioned for. */
  pvcName?: string;
  pvcNamespace?: string;
  allocationId?: string;
  /** The allocation's job and task group, as Nomad's HTTP API told them. */
  jobId?: string;
  taskGroup?: string;
  taskId?: string;
  /** Where the volume is published for this workload. */
  targetPath?: string;
}

export interface AttachmentRecord {
  volume: string;
  nodeId: string;
  /** The block device on the node, e.g. /dev/loop3. */
  devicePath: string;
  /** "kernel-nbd" or "nbdfuse-loop". */
  method: string;
  stagingPath: string;
  workloads: AttachmentWorkload[];
  /** ISO 8601; set when the volume and node are first recorded. */
  attachedAt: string;
}

export interface AttachmentFilter {
  volume?: string;
  nodeId?: string;
}

const FILE_NAME = 'attachments.json';

export class AttachmentStore {
  private records = new Map<string, AttachmentRecord>();
  private readonly file: string;
  /** A removal failed to reach the file: the file holds records that are gone. */
  private unsaved = false;

  /** Loads DATA_DIR/attachments.json. A damaged file is logged and replaced at the next change. */
  constructor(private readonly dataDir: string, private readonly logger: Logger) {
    this.file = path.join(dataDir, FILE_NAME);
    for (const record of this.load()) this.records.set(key(record), record);
  }

  /** Adds or replaces the attachment of record.volume on record.nodeId; keeps the first attachedAt. */
  record(record: Omit<AttachmentRecord, 'attachedAt'>): AttachmentRecord {
    const attachedAt = this.records.get(key(record))?.attachedAt ?? new Date().toISOString();
    const stored = { ...record, attachedAt };
    this.change((records) => records.set(key(record), stored));
    return stored;
  }

  /**
   * Forgets an attachment (the device is detached already). Forgotten here even if the file cannot be
   * written now, which fails the call: the call again, or the next change that can, writes the file
   * without it (a retry found nothing to forget and answered OK, the file still holding it).
   */
  remove(volume: string, nodeId: string): void {
    if (this.records.delete(key({ volume, nodeId })) || this.unsaved) this.save(this.records);
  }

  /** Forgets every attachment of a volume (it was deleted); a file that cannot be written now is only logged: the delete itself is done. */
  removeVolume(volume: string): void {
    const gone = this.list({ volume });
    if (gone.length === 0) return;
    for (const record of gone) this.records.delete(key(record));
    try {
      this.save(this.records);
    } catch (err) {
      this.logger.error({ err, volume }, 'the attachment records of a deleted volume could not be removed from the file yet');
    }
  }

  /** Applies edit to a copy of the records, saves the copy and only then keeps it: a save that fails changes nothing. */
  private change(edit: (records: Map<string, AttachmentRecord>) => unknown): void {
    const next = new Map(this.records);
    edit(next);
    this.save(next);
    this.records = next;
  }

  list(filter: AttachmentFilter = {}): AttachmentRecord[] {
    return [...this.records.values()]
      .filter((r) => (!filter.volume || r.volume === filter.volume) && (!filter.nodeId || r.nodeId === filter.nodeId))
      .sort((a, b) => key(a).localeCompare(key(b)));
  }

  private load(): AttachmentRecord[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    try {
      const records = JSON.parse(text) as unknown;
      if (Array.isArray(records) && records.every(isRecord)) return records;
    } catch {
      // Reported below, like any other damage.
    }
    this.logger.warn({ file: this.file }, 'attachment records are damaged; starting without them (the CSI node service reports them again)');
    return [];
  }

  /** Writes records to the file; a disk that is full or failing is the caller's error to see, not weftd's own. */
  private save(records: Map<string, AttachmentRecord>): void {
    const list = [...records.values()].sort((a, b) => key(a).localeCompare(key(b)));
    try {
      writeFileAtomic(this.file, JSON.stringify(list, null, 2) + '\n', this.dataDir);
      this.unsaved = false;
    } catch (err) {
      if (records === this.records) this.unsaved = true;
      const why = `the attachment records could not be written to ${this.file}: ${(err as Error).message}`;
      throw new WeftError((err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE', why);
    }
  }
}

/** Enough of a record to be kept by its key; weftd starts without a file that holds anything else. */
function isRecord(value: unknown): value is AttachmentRecord {
  const record = value as Partial<AttachmentRecord> | null;
  return typeof record === 'object' && record !== null && typeof record.volume === 'string' && typeof record.nodeId === 'string' && Array.isArray(record.workloads);
}

function key(record: { volume: string; nodeId: string }): string {
  return `${record.volume}\u0000${record.nodeId}`;
}
