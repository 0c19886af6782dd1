// Service classes as weftd's config file declares them: each class's objectives (the promise an
// operator makes for its volumes), e.g. classes: {ssd: {objectives: {readLatencyP99: 2ms, availability: 99.9%}}}.

import { LATENCY_BUCKETS } from './latency';

/** A service class name: also the class of pools (weftd --pool CLASS:PATH). */
export const CLASS_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** In base units; a field is absent when the class does not promise it. */
export interface ClassObjectives {
  readLatencyP99Seconds?: number;
  writeLatencyP99Seconds?: number;
  /** Of 1: 99.9% is 0.999. */
  availabilityRatio?: number;
}

export interface ServiceClass {
  name: string;
  objectives: ClassObjectives;
}

/** Powers of ten: the decimal text is scaled in its exponent, so 2ms reads exactly 0.002. */
const DURATION_EXPONENT: Record<string, number> = { us: -6, µs: -6, ms: -3, s: 0 };
/**
 * The largest latency bucket's bound: an objective above it could not be measured (every operation
 * would count as within it), so it is refused rather than promised and never checked.
 */
const MAX_LATENCY_SECONDS = LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1];

/** What each objective key of the config file means, and how its value is read. */
const OBJECTIVES: Record<string, { field: keyof ClassObjectives; parse: (value: unknown) => number }> = {
  readLatencyP99: { field: 'readLatencyP99Seconds', parse: duration },
  writeLatencyP99: { field: 'writeLatencyP99Seconds', parse: duration },
  availability: { field: 'availabilityRatio', parse: percent },
};

const kebab = (key: string) => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);

/**
 * The config file's `classes` mapping, sorted by name. Throws an Error naming the class, the key
 * and what was expected; `where` says where the mapping is (e.g. `"classes" in weftd.yaml`).
 */
export function parseClasses(value: unknown, where: string): ServiceClass[] {
  const classes = mapping(value, where, 'a mapping of class names to settings, e.g. {ssd: {objectives: {readLatencyP99: 2ms}}}');
  return Object.entries(classes)
    .map(([name, settings]) => {
      if (!CLASS_NAME.test(name)) throw new Error(`invalid class name "${name}" in ${where}: expected letters, digits, "_" or "-" (as in --pool CLASS:PATH)`);
      return { name, objectives: classObjectives(settings, `class ${name} in ${where}`) };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

function classObjectives(value: unknown, where: string): ClassObjectives {
  const settings = mapping(value, where, 'a mapping with the key objectives');
  const objectives: ClassObjectives = {};
  for (const [key, given] of Object.entries(settings)) {
    if (key !== 'objectives') throw new Error(`unknown key "${key}" for ${where}: expected objectives`);
    for (const [name, raw] of Object.entries(mapping(given, `the objectives of ${where}`, 'a mapping of objectives'))) {
      const known = Object.keys(OBJECTIVES).find((candidate) => candidate === name || kebab(candidate) === name);
      if (!known) throw new Error(`unknown objective "${name}" for ${where}: expected one of ${Object.keys(OBJECTIVES).join(', ')}`);
      try {
        objectives[OBJECTIVES[known].field] = OBJECTIVES[known].parse(raw);
      } catch (error) {
        throw new Error(`invalid ${name} ${JSON.stringify(raw)} for ${where}: ${(error as Error).message}`);
      }
    }
  }
  return objectives;
}

function mapping(value: unknown, where: string, expected: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`invalid ${where}: expected ${expected}`);
  return value as Record<string, unknown>;
}

/** "2ms", "500us", "1.5s": above 0, at most the largest latency bucket (10s). */
function duration(value: unknown): number {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)(us|µs|ms|s)$/.exec(value.trim()) : null;
  if (!match) throw new Error('expected a duration with its unit, e.g. 2ms, 500us, 1.5s');
  const seconds = Number(`${match[1]}e${DURATION_EXPONENT[match[2]]}`);
  if (seconds <= 0 || seconds > MAX_LATENCY_SECONDS) throw new Error(`expected a duration above 0 and at most ${MAX_LATENCY_SECONDS}s (the largest latency bucket: a slower operation is counted in none)`);
  return seconds;
}

/** "99.9%": above 0% and below 100% (an objective of 100% leaves no error budget). */
function percent(value: unknown): number {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)%$/.exec(value.trim()) : null;
  if (!match) throw new Error('expected a percentage, e.g. 99.9%');
  const ratio = Number(`${match[1]}e-2`);
  if (ratio <= 0 || ratio >= 1) throw new Error('expected a percentage above 0% and below 100%');
  return ratio;
}
