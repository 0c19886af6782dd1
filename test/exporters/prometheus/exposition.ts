// A Prometheus text exposition read back as families: each one's TYPE and its series' labels and
// values, for tests that assert what a scrape shows.

export interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  type: string;
  series: Series[];
}

/** The families of an exposition by name; a histogram's or summary's _bucket/_sum/_count series are its own. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1], (current = { type: type[2], series: [] }));
    if (line === '' || line.startsWith('#') || !current) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    current.series.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return families;
}

/** The value of the series named so with exactly these labels, or undefined (name may be a histogram's NAME_bucket, _sum or _count). */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ''));
  return family?.series.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted)?.value;
}
