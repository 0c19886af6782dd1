// `weft attachment list [VOLUME]`: where volumes are attached (node, device, method) and for which
// workloads (pod, allocation, task), as the CSI node services reported them to weftd.

import type { Command } from 'commander';
import type { AttachmentRecord, AttachmentWorkload } from '../api/attachments';
import { action, type CommandContext, type Outcome } from './context';
import { formatTime, table, type Column } from './output';

export function attachmentCommands(program: Command): void {
  const attachment = program.command('attachment').description('inspect where volumes are attached and for which workloads');
  attachment
    .command('list')
    .argument('[volume]', 'only this volume')
    .description('list attached volumes with their device and workloads')
    .action(action(listAttachments));
}

async function listAttachments(context: CommandContext, [volume]: [string | undefined]): Promise<Outcome> {
  const attachments = await context.client.listAttachments(volume ? { volume } : {});
  return { json: attachments, text: attachments.length ? table(ATTACHMENT_COLUMNS, attachments) : 'no attachments' };
}

function workloadName(w: AttachmentWorkload): string {
  if (w.podName) return `pod ${w.podNamespace ? `${w.podNamespace}/` : ''}${w.podName}`;
  if (w.allocationId) return `alloc ${w.allocationId}`;
  if (w.taskId) return `task ${w.taskId}`;
  return w.orchestrator;
}

export const ATTACHMENT_COLUMNS: Column<AttachmentRecord>[] = [
  { header: 'VOLUME', value: (a) => a.volume },
  { header: 'NODE', value: (a) => a.nodeId },
  { header: 'DEVICE', value: (a) => a.devicePath },
  { header: 'METHOD', value: (a) => a.method },
  { header: 'WORKLOADS', value: (a) => a.workloads.map(workloadName).join(', ') || '-' },
  { header: 'SINCE', value: (a) => formatTime(a.attachedAt) },
];
