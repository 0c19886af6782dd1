// `weft snapshot ...`: create, list (all, or one volume's) and delete snapshots. A snapshot is
// named VOL@SNAP wherever one name is enough, and as VOL SNAP when it is being created.

import type { Command } from 'commander';
import { formatSize } from '../units';
import type { SnapshotInfo } from '../volume/types';
import { nameArg, newSnapshotArg, snapshotArg } from './args';
import { action, type CommandContext, type Outcome } from './context';
import { formatTime, table, type Column } from './output';

export function snapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('create, list and delete snapshots of volumes');

  snapshot
    .command('create')
    .description('take a snapshot of a volume (exported read-only over NBD as VOL@SNAP)')
    .argument('<vol>', 'the volume')
    .argument('<snap>', 'name of the new snapshot: 1-63 letters, digits, ".", "_" or "-"')
    .action(action(createSnapshot));

  snapshot
    .command('list')
    .description('list the snapshots of every volume, or of one')
    .argument('[vol]', 'only the snapshots of this volume')
    .action(action(listSnapshots));

  snapshot
    .command('delete')
    .description('delete a snapshot (its blocks are freed unless a clone or a later snapshot needs them)')
    .argument('<vol@snap>', 'the snapshot')
    .action(action(deleteSnapshot));
}

async function createSnapshot(context: CommandContext, [volume, name]: [string, string]): Promise<Outcome> {
  const created = await context.client.createSnapshot(nameArg('volume', volume), newSnapshotArg(name));
  return { json: created, text: `created snapshot "${created.volume}@${created.name}" (${formatSize(created.sizeBytes)})` };
}

async function listSnapshots(context: CommandContext, [volume]: [string | undefined]): Promise<Outcome> {
  const snapshots = await context.client.listSnapshots(volume === undefined ? undefined : nameArg('volume', volume));
  return { json: snapshots, text: snapshots.length ? table(SNAPSHOT_COLUMNS, snapshots) : 'no snapshots' };
}

async function deleteSnapshot(context: CommandContext, [target]: [string]): Promise<Outcome> {
  const { volume, snapshot } = snapshotArg(target);
  await context.client.deleteSnapshot(volume, snapshot);
  return { json: { volume, snapshot, deleted: true }, text: `deleted snapshot "${volume}@${snapshot}"` };
}

export const SNAPSHOT_COLUMNS: Column<SnapshotInfo>[] = [
  { header: 'VOLUME', value: (s) => s.volume },
  { header: 'SNAPSHOT', value: (s) => s.name },
  { header: 'SIZE', value: (s) => formatSize(s.sizeBytes), alignRight: true },
  { header: 'EXCLUSIVE', value: (s) => formatSize(s.exclusiveBytes), alignRight: true },
  { header: 'CLASS', value: (s) => s.class },
  { header: 'CREATED', value: (s) => formatTime(s.createdAt) },
];
