// `weft volume ...`: create (empty or from a snapshot), list, show, resize, delete, verify, revert
// and stats. Each handler parses its arguments, makes one call, and describes the result (stats,
// a live view, is in volume-stats-command.ts).

import type { Command } from 'commander';
import type { CreateVolumeOptions } from '../api/client';
import { MAX_REPLICAS } from '../api/validate';
import { formatSize } from '../units';
import { resyncDone, type LayerInfo, type ReplicaInfo, type ReplicaVerifyResult, type VerifyReport, type VolumeInfo } from '../volume/types';
import { exportArg, nameArg, sizeArg, snapshotArg } from './args';
import { action, type CommandContext, type Outcome } from './context';
import { usageError } from './errors';
import { details, formatTime, table, type Column } from './output';
import { ProgressBar } from './progress';
import { volumeStats } from './volume-stats-command';

const NAME_HELP = 'volume name: 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit';
const SIZE_HELP = 'e.g. 512MiB, 10G, 1TiB (binary units; GB/MB are decimal)';

export function volumeCommands(program: Command): void {
  const volume = program.command('volume').description('create, inspect, resize, verify, revert and delete volumes, and watch their I/O');

  volume
    .command('create')
    .description('create an empty volume, or a clone of a snapshot with --from-snapshot')
    .argument('<name>', NAME_HELP)
    .option('--size <size>', `size of the volume, ${SIZE_HELP}; required unless cloning, where it may only grow`)
    .option('--class <class>', 'service class of the pool to place it in (default: "default"); for a clone, where its new writes go (default: the snapshot\'s class)')
    .option('--from-snapshot <vol@snap>', "clone this snapshot; what the clone does not rewrite is read from the snapshot's pool")
    .option('--replicas <n>', 'copies on distinct nodes, kept in step synchronously (default 1: one copy, on this node)')
    .option('--locality <node>', 'the node to hold the primary copy (where the workload runs)')
    .action(action(createVolume));

  volume.command('list').description('list the volumes of the node').action(action(listVolumes));

  volume.command('show').description("show one volume's details").argument('<name>', NAME_HELP).action(action(showVolume));

  volume
    .command('resize')
    .description('grow a volume (online: connected clients see the new size); volumes never shrink')
    .argument('<name>', NAME_HELP)
    .requiredOption('--size <size>', `the new size, ${SIZE_HELP}`)
    .action(action(resizeVolume));

  volume
    .command('delete')
    .description('delete a volume and its data (refused while it is connected); its snapshots stay until deleted')
    .argument('<name>', NAME_HELP)
    .action(action(deleteVolume));

  volume
    .command('verify')
    .description(
      'read every allocated block of a volume or snapshot and check its checksum; exits 1 and lists the offsets of bad blocks (failing their checksum, or unreadable). ' +
        "A replicated volume's copies in sync are compared and repaired instead (exit 1 only for a block no copy reads good)",
    )
    .argument('<name>', 'the volume, or VOL@SNAP for a snapshot')
    .action(action(verifyVolume));

  volume
    .command('revert')
    .description('discard everything written to a volume since one of its snapshots (refused while connected)')
    .argument('<vol@snap>', 'the volume and the snapshot to go back to')
    .action(action(revertVolume));

  volume
    .command('stats')
    .description(
      "a live view of a volume's I/O from weftd's own counters, like iostat: read and write IOPS, MB/s (10^6 bytes), " +
        'p50 and p99 latency (estimated from latency buckets), requests in flight; without a name, the volumes with the most IOPS. ' +
        "The figures are the answering node's: for a replicated volume asked on a node that is not its primary, the I/O of the clients attached through that node. " +
        '--output json prints one JSON object per line, in operations/s, bytes/s and seconds',
    )
    .argument('[name]', 'the volume, or VOL@SNAP; omit for the top volumes')
    .option('--interval <duration>', 'time between two samples: 500ms, 2s, or plain seconds', '1s')
    .option('--watch', 'one line (or table) per interval until Ctrl-C; the header again every 20 lines')
    .option('--top <n>', 'without a name: how many volumes to show (default 10)')
    .action(action(volumeStats));
}

interface CreateOptions {
  size?: string;
  class?: string;
  fromSnapshot?: string;
  replicas?: string;
  locality?: string;
}

async function createVolume(context: CommandContext, [name]: [string], options: CreateOptions): Promise<Outcome> {
  const request: CreateVolumeOptions = {
    name: nameArg('name', name),
    sizeBytes: options.size === undefined ? undefined : sizeArg('--size', options.size),
    class: options.class === undefined ? undefined : nameArg('--class', options.class),
    sourceSnapshot: options.fromSnapshot === undefined ? undefined : snapshotArg(options.fromSnapshot),
    replicas: options.replicas === undefined ? undefined : replicasArg(options.replicas),
    locality: options.locality === undefined ? undefined : nameArg('--locality', options.locality),
  };
  if (!request.sourceSnapshot && request.sizeBytes === undefined) {
    throw usageError('--size is required (or --from-snapshot VOL@SNAP to clone a snapshot)');
  }
  const created = await context.client.createVolume(request);
  const source = created.sourceSnapshot ? ` from ${created.sourceSnapshot}` : '';
  return volumeOutcome(created, `created volume "${created.name}"${source}: ${describe(created)}`);
}

async function listVolumes(context: CommandContext): Promise<Outcome> {
  const volumes = await context.client.listVolumes();
  return { json: volumes, text: volumes.length ? table(VOLUME_COLUMNS, volumes) : 'no volumes' };
}

async function showVolume(context: CommandContext, [name]: [string]): Promise<Outcome> {
  const volume = await context.client.getVolume(nameArg('name', name));
  return volumeOutcome(volume, volumeDetails(volume));
}

async function resizeVolume(context: CommandContext, [name]: [string], options: { size: string }): Promise<Outcome> {
  const volume = await context.client.resizeVolume(nameArg('name', name), sizeArg('--size', options.size));
  return volumeOutcome(volume, `resized volume "${volume.name}": ${describe(volume)}`);
}

async function deleteVolume(context: CommandContext, [name]: [string]): Promise<Outcome> {
  const volume = nameArg('name', name);
  await context.client.deleteVolume(volume);
  // Snapshots outlive their volume; say so, as they keep their space (and the name) until deleted.
  const kept = (await context.client.listSnapshots(volume).catch(() => [])).map((s) => `${s.volume}@${s.name}`);
  const note = kept.length > 0 ? `; its snapshots stay: ${kept.join(', ')}` : '';
  return { json: { volume, deleted: true, keptSnapshots: kept }, text: `deleted volume "${volume}"${note}` };
}

async function verifyVolume(context: CommandContext, [name]: [string]): Promise<Outcome> {
  const volume = exportArg(name);
  const bar = context.stderr.isTTY ? new ProgressBar(context.stderr, `verifying ${volume}`) : undefined;
  try {
    return verifyOutcome(await context.client.verifyVolume(volume, (done, total) => bar?.update(done, total)));
  } finally {
    bar?.clear();
  }
}

async function revertVolume(context: CommandContext, [target]: [string]): Promise<Outcome> {
  const { volume, snapshot } = snapshotArg(target);
  const reverted = await context.client.revertVolume(volume, snapshot);
  return volumeOutcome(reverted, `reverted volume "${reverted.name}" to snapshot "${snapshot}": ${describe(reverted)}`);
}

function replicasArg(text: string): number {
  if (!/^[1-9][0-9]*$/.test(text) || Number(text) > MAX_REPLICAS) throw usageError(`--replicas "${text}" must be a whole number of copies, from 1 to ${MAX_REPLICAS}`);
  return Number(text);
}

function volumeOutcome(volume: VolumeInfo, text: string): Outcome {
  return { json: volume, text };
}

function describe(volume: VolumeInfo): string {
  return `${formatSize(volume.sizeBytes)} in class ${volume.class}`;
}

export const VOLUME_COLUMNS: Column<VolumeInfo>[] = [
  { header: 'NAME', value: (v) => v.name },
  { header: 'CLASS', value: (v) => v.class },
  { header: 'SIZE', value: (v) => formatSize(v.sizeBytes), alignRight: true },
  { header: 'ALLOCATED', value: (v) => formatSize(v.allocatedBytes), alignRight: true },
  { header: 'SNAPSHOTS', value: (v) => String(v.snapshotCount), alignRight: true },
  { header: 'CONNECTIONS', value: (v) => String(v.connections), alignRight: true },
  { header: 'SOURCE', value: (v) => v.sourceSnapshot ?? '-' },
  { header: 'CREATED', value: (v) => formatTime(v.createdAt) },
];

/** What a layer is: the volume's head (where its writes go), a snapshot, or a deleted snapshot still read through. */
function layerName(layer: LayerInfo, index: number): string {
  if (index === 0) return 'head';
  if (layer.deleted) return 'deleted snapshot';
  return layer.snapshot ? `${layer.snapshot.volume}@${layer.snapshot.name}` : '-';
}

const LAYER_COLUMNS: Column<[LayerInfo, number]>[] = [
  { header: 'LAYER', value: ([layer, i]) => layerName(layer, i) },
  { header: 'CLASS', value: ([layer]) => layer.class },
  { header: 'ALLOCATED', value: ([layer]) => formatSize(layer.allocatedBytes), alignRight: true },
];

/** "resyncing 42% (10 MiB of 24 MiB)" while the primary copies to it. */
function replicaState(r: ReplicaInfo): string {
  const done = resyncDone(r);
  return done ? `resyncing ${done.percent}% (${formatSize(done.doneBytes)} of ${formatSize(r.resyncTotalBytes)})` : r.state;
}

/** The volume's fields, then its layers: which pool holds what the volume reads. */
export function volumeDetails(volume: VolumeInfo): string {
  const layers = table(LAYER_COLUMNS, volume.layers.map((layer, i): [LayerInfo, number] => [layer, i]));
  const replication = volume.replication;
  const replicas = replication
    ? `

Replicas (primary ${replication.primary}, epoch ${replication.epoch}):
${table(REPLICA_COLUMNS, replication.replicas.map((r): [ReplicaInfo, string] => [r, replication.primary]))}
Attached on: ${replication.attachedNode || '-'}${replication.snapshotting ? `\nSnapshot not settled: ${replication.snapshotting} (being taken, or cut short: kept if every copy holds it, else deleted)` : ''}`
    : '';
  return `${fields(volume)}

Layers (head first):
${layers}${replicas}`;
}

const REPLICA_COLUMNS: Column<[ReplicaInfo, string]>[] = [
  { header: 'NODE', value: ([r, primary]) => (r.node === primary ? `${r.node} (primary)` : r.node) },
  { header: 'POOL', value: ([r]) => r.pool },
  { header: 'STATE', value: ([r]) => replicaState(r) },
  // Only the primary knows how far behind a copy is.
  { header: 'BEHIND', value: ([r]) => (r.live ? formatSize(r.behindBytes) : '-'), alignRight: true },
  { header: 'RESYNCED', value: ([r]) => (r.live ? formatSize(r.resyncCopiedBytes) : '-'), alignRight: true },
];

function fields(volume: VolumeInfo): string {
  return details([
    ['Name', volume.name],
    ['Class', volume.class],
    ['Size', `${formatSize(volume.sizeBytes)} (${volume.sizeBytes} bytes)`],
    ['Allocated', `${formatSize(volume.allocatedBytes)} (${volume.allocatedBytes} bytes)`],
    ['Source', volume.sourceSnapshot ?? '-'],
    ['Snapshots', String(volume.snapshotCount)],
    ['Connections', String(volume.connections)],
    ['Checksum errors', String(volume.checksumErrors)],
    ['Epoch', String(volume.epoch)],
    ['Created', formatTime(volume.createdAt)],
  ]);
}

/** The report is the output either way; bad blocks (of a replicated volume: blocks no copy reads good) also make the command fail. */
export function verifyOutcome(report: VerifyReport): Outcome {
  const bad = report.badBlockOffsets;
  const what = `${report.volume.includes('@') ? 'snapshot' : 'volume'} "${report.volume}"`;
  const replicas = report.replicas ?? [];
  const repaired = replicas.reduce((sum, r) => sum + r.checksumRepairedBlocks + r.mismatchRepairedBlocks, 0);
  const repairs = replicas.length > 0 ? `, ${repaired} repaired` : '';
  const summary = `verified ${what}: ${report.checkedBlocks} blocks checked${repairs}, ${bad.length || 'no'} bad block${bad.length === 1 ? '' : 's'}`;
  const lines = bad.map((offset) => `bad block at offset ${offset}${replicas.length > 0 ? ' (no copy reads it good)' : ''}`);
  if (replicas.length > 0) lines.push(table(REPLICA_VERIFY_COLUMNS, replicas.map((r, i): [ReplicaVerifyResult, boolean] => [r, i === 0])));
  for (const skipped of report.skippedReplicas ?? []) lines.push(`skipped ${skipped.node}: ${skipped.reason}`);
  const failure = bad.length ? `${what} has ${bad.length} bad block${bad.length > 1 ? 's' : ''}` : undefined;
  return { json: report, text: [summary, ...lines].join('\n'), failure };
}

/** A verify's copies; the first is the primary's. */
const REPLICA_VERIFY_COLUMNS: Column<[ReplicaVerifyResult, boolean]>[] = [
  { header: 'NODE', value: ([r, primary]) => (primary ? `${r.node} (primary)` : r.node) },
  { header: 'COMPARED', value: ([r]) => String(r.comparedBlocks), alignRight: true },
  { header: 'REPAIRED (CHECKSUM)', value: ([r]) => String(r.checksumRepairedBlocks), alignRight: true },
  { header: 'REPAIRED (MISMATCH)', value: ([r]) => String(r.mismatchRepairedBlocks), alignRight: true },
];
