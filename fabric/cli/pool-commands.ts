// `weft pool list`: each pool's service class, whether its disks answer, capacity, use,
// thin-provisioned total and the devices or files it is made of.

import type { Command } from 'commander';
import { formatSize } from '../units';
import type { PoolInfo } from '../volume/types';
import { action, type CommandContext, type Outcome } from './context';
import { table, type Column } from './output';

export function poolCommands(program: Command): void {
  const pool = program.command('pool').description("inspect the node's storage pools");
  pool.command('list').description('list the pools with their capacity and use').action(action(listPools));
}

async function listPools(context: CommandContext): Promise<Outcome> {
  const pools = await context.client.listPools();
  return { json: pools, text: pools.length ? table(POOL_COLUMNS, pools) : 'no pools' };
}

const percent = (part: number, whole: number) => (whole > 0 ? `${Math.round((part * 100) / whole)}%` : '-');

export const POOL_COLUMNS: Column<PoolInfo>[] = [
  { header: 'CLASS', value: (p) => p.class },
  { header: 'STATE', value: (p) => p.state },
  { header: 'CAPACITY', value: (p) => formatSize(p.capacityBytes), alignRight: true },
  { header: 'USED', value: (p) => formatSize(p.usedBytes), alignRight: true },
  { header: 'USED%', value: (p) => percent(p.usedBytes, p.capacityBytes), alignRight: true },
  { header: 'PROVISIONED', value: (p) => formatSize(p.provisionedBytes), alignRight: true },
  { header: 'MEMBERS', value: (p) => p.members.map((m) => m.path).join(',') || '-' },
];
