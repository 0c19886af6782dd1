// `weft class list`: the node's service classes (of its pools, and those weftd's config declares)
// with their capacity, use and objectives (read/write p99 latency, availability).

import type { Command } from 'commander';
import type { ClassInfo } from '../api/pool-service';
import { formatSize } from '../units';
import { action, type CommandContext, type Outcome } from './context';
import { formatLatency, table, type Column } from './output';

export function classCommands(program: Command): void {
  const serviceClass = program.command('class').description("inspect the node's service classes and their objectives");
  serviceClass.command('list').description('list the service classes with their capacity, use and objectives').action(action(listClasses));
}

async function listClasses(context: CommandContext): Promise<Outcome> {
  const classes = await context.client.listClasses();
  return { json: classes, text: classes.length ? table(CLASS_COLUMNS, classes) : 'no classes' };
}

/** 0.999 -> "99.9%"; "-" when not promised. */
export function formatRatio(ratio: number | undefined): string {
  return ratio === undefined ? '-' : `${Number((ratio * 100).toPrecision(6))}%`;
}

const CLASS_COLUMNS: Column<ClassInfo>[] = [
  { header: 'CLASS', value: (c) => c.name },
  { header: 'CAPACITY', value: (c) => formatSize(c.capacityBytes), alignRight: true },
  { header: 'USED', value: (c) => formatSize(c.usedBytes), alignRight: true },
  { header: 'PROVISIONED', value: (c) => formatSize(c.provisionedBytes), alignRight: true },
  { header: 'READ P99', value: (c) => formatLatency(c.objectives.readLatencyP99Seconds), alignRight: true },
  { header: 'WRITE P99', value: (c) => formatLatency(c.objectives.writeLatencyP99Seconds), alignRight: true },
  { header: 'AVAILABILITY', value: (c) => formatRatio(c.objectives.availabilityRatio), alignRight: true },
];
