// How the CLI prints: aligned tables and "Key: value" details for people, JSON for scripts
// (sizes as byte counts), and the small formats both share (times, durations).

export type OutputFormat = 'table' | 'json';

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Numbers and sizes read better right-aligned. */
  alignRight?: boolean;
  /** At least this many characters: keeps the columns of a live view still from one line to the next. */
  width?: number;
}

/** Upper-case headers over aligned columns, two spaces apart, no trailing blanks. */
export function table<T>(columns: Column<T>[], rows: T[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((row) => columns.map((c) => c.value(row)))];
  const widths = columns.map((column, i) => Math.max(column.width ?? 0, ...cells.map((line) => line[i].length)));
  const pad = (text: string, i: number) => (columns[i].alignRight ? text.padStart(widths[i]) : text.padEnd(widths[i]));
  return cells.map((line) => line.map(pad).join('  ').trimEnd()).join('\n');
}

/** One line of a table printed as it goes (a live view): the header when no row is given. */
export function tableLine<T>(columns: Column<T>[], row?: T): string {
  const lines = table(columns, row === undefined ? [] : [row]).split('\n');
  return lines[lines.length - 1];
}

/** "Label:  value" lines with the values aligned. */
export function details(fields: [label: string, value: string][]): string {
  const width = Math.max(...fields.map(([label]) => label.length)) + 1;
  return fields.map(([label, value]) => `${`${label}:`.padEnd(width)}  ${value}`).join('\n');
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** "2026-11-22T02:41:57.123Z" -> "2026-11-22 02:41:57Z"; anything unparsable as it is. */
export function formatTime(iso: string): string {
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(iso);
  return match ? `${match[1]} ${match[2]}${match[3]}` : iso || '-';
}

/** 93784 -> "1d 2h 3m 4s"; leading zero units are left out. */
export function formatDuration(totalSeconds: number): string {
  const parts: [number, string][] = [
    [Math.floor(totalSeconds / 86400), 'd'],
    [Math.floor(totalSeconds / 3600) % 24, 'h'],
    [Math.floor(totalSeconds / 60) % 60, 'm'],
    [Math.floor(totalSeconds) % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return first < 0 ? '0s' : parts.slice(first).map(([n, unit]) => `${n}${unit}`).join(' ');
}

/** 0.000075 -> "75us", 0.00412 -> "4.12ms", 0.002 -> "2ms", 2.5 -> "2.5s"; "-" when there is none. */
export function formatLatency(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)}us`;
  if (seconds < 1) return `${Number((seconds * 1e3).toFixed(2))}ms`;
  return `${Number(seconds.toFixed(2))}s`;
}
