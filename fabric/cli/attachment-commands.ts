// `weft attachment list [VOLUME]`: where volumes are attached (node, device, method) and for which
// workloads (pod and its claim, allocation and its job, task), as the CSI node services reported them to weftd.

import type { Command } from 'commander';
import type { AttachmentRecord, AttachmentWorkload } from '../api/attachments';
import { nameArg } from './args';
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
  const attachments = await context.client.listAttachments(volume === undefined ? {} : { volume: nameArg('volume', volume) });
  return { json: attachments, text: attachments.length ? table(ATTACHMENT_COLUMNS, attachments) : 'no attachments' };
}

/** "pod shop/web-0 (pvc data-web-0)", "alloc ID (job web, group cache)": each with what is known of it. */
function workloadName(w: AttachmentWorkload): string {
  const [name, details] = nameAndDetails(w);
  const known = details.filter((detail) => detail);
  return known.length ? `${name} (${known.join(', ')})` : name;
}

function nameAndDetails(w: AttachmentWorkload): [string, (string | undefined)[]] {
  const inNamespace = (namespace: string | undefined, name: string) => (namespace ? `${namespace}/${name}` : name);
  if (w.podName) return [`pod ${inNamespace(w.podNamespace, w.podName)}`, [w.pvcName && `pvc ${w.pvcName}`]];
  if (w.pvcName) return [`pvc ${inNamespace(w.pvcNamespace, w.pvcName)}`, []];
  if (w.allocationId) return [`alloc ${w.allocationId}`, [w.jobId && `job ${w.jobId}`, w.taskGroup && `group ${w.taskGroup}`]];
  if (w.taskId) return [`task ${w.taskId}`, []];
  return [w.orchestrator, []];
}

export const ATTACHMENT_COLUMNS: Column<AttachmentRecord>[] = [
  { header: 'VOLUME', value: (a) => a.volume },
  { header: 'NODE', value: (a) => a.nodeId },
  { header: 'DEVICE', value: (a) => a.devicePath },
  { header: 'METHOD', value: (a) => a.method },
  { header: 'WORKLOADS', value: (a) => a.workloads.map(workloadName).join(', ') || '-' },
  { header: 'SINCE', value: (a) => formatTime(a.attachedAt) },
];
