// The Prometheus rules (exporters/prometheus/rules/*.yml) through promtool, Debian's `prometheus`
// package (test/setup-host.sh installs it): `promtool check rules` on the rule files and `promtool
// test rules` on their unit tests (*.test.yml), whose input series show each alert firing and staying
// quiet. A broken copy of the rules shows that both checks fail when they should.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { LATENCY_BUCKETS } from '../../../fabric/telemetry';
import { REPO_ROOT } from '../../helpers/weftd';

const RULES_DIR = path.join(REPO_ROOT, 'exporters', 'prometheus', 'rules');
const RULE_FILES = ['recording.yml', 'alerts.yml'];
const TEST_FILES = ['sla.test.yml', 'health.test.yml'];

interface PromtoolResult {
  code: number;
  output: string;
}

function promtool(args: string[], cwd: string): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    execFile('promtool', args, { cwd }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error); // not started (ENOENT...)
      else resolve({ code: error ? (error.code as number) : 0, output: stdout + stderr });
    });
  });
}

function yamlFile<T>(name: string): T {
  return parse(fs.readFileSync(path.join(RULES_DIR, name), 'utf8')) as T;
}

type RuleFile = { groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[] };

function alertNames(): string[] {
  const groups = yamlFile<RuleFile>('alerts.yml').groups;
  return [...new Set(groups.flatMap((group) => group.rules.flatMap((rule) => (rule.alert ? [rule.alert] : []))))];
}

/** A copy of the rules and their tests in a temporary directory, with one rule file edited. */
function brokenCopy(file: string, from: string, to: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-rules-'));
  for (const name of [...RULE_FILES, ...TEST_FILES]) fs.copyFileSync(path.join(RULES_DIR, name), path.join(dir, name));
  const text = fs.readFileSync(path.join(dir, file), 'utf8');
  if (!text.includes(from)) throw new Error(`${file} has no ${from}`);
  fs.writeFileSync(path.join(dir, file), text.replace(from, to));
  return dir;
}

const copies: string[] = [];
afterAll(() => copies.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

it('the rules directory holds the rule files and unit tests this test runs', () => {
  expect(fs.readdirSync(RULES_DIR).sort()).toEqual([...RULE_FILES, ...TEST_FILES].sort());
});

it('promtool check rules passes on the recording and alerting rules', async () => {
  const result = await promtool(['check', 'rules', ...RULE_FILES], RULES_DIR);
  expect(result).toEqual({ code: 0, output: expect.stringContaining('SUCCESS: 27 rules found') });
  expect(result.output).toContain('SUCCESS: 12 rules found');
});

it('promtool test rules passes: each alert fires and stays quiet', async () => {
  const result = await promtool(['test', 'rules', ...TEST_FILES], RULES_DIR);
  expect(result.output).not.toContain('FAILED');
  expect(result.code).toBe(0);
});

/**
 * How Prometheus 3 writes an le value whatever the exposition said (its formatOpenMetricsFloat: Go's
 * shortest 'g' format, ".0" added to a whole number): 1 is "1.0", 0.00005 is "5e-05".
 */
function prometheus3Le(bound: number): string {
  const exponent = Math.floor(Math.log10(bound));
  if (exponent < -4 || exponent >= 21) return bound.toExponential().replace(/e([+-])(\d)$/, 'e$10$2');
  return Number.isInteger(bound) ? `${bound}.0` : String(bound);
}

it("the table of bucket bounds the latency SLO reads is the exporter's buckets, each le as weftd writes it and as Prometheus 3 stores it", () => {
  const rule = yamlFile<RuleFile>('recording.yml')
    .groups.flatMap((group) => group.rules)
    .find((r) => r.record === 'weft:latency_bucket_bound_seconds:const');
  const entries = [...(rule?.expr ?? '').matchAll(/vector\(([^)]+)\), "le", "([^"]+)"/g)].map((m) => [m[1] === '+Inf' ? Infinity : Number(m[1]), m[2]]);
  const spellings = (bound: number) => [...new Set([String(bound), prometheus3Le(bound)])].map((le) => [bound, le]);
  expect(prometheus3Le(0.00005)).toBe('5e-05');
  expect(entries).toEqual([...LATENCY_BUCKETS.flatMap(spellings), [Infinity, '+Inf']]);
});

it('the unit tests evaluate every rule group, recording rules before the alerts that read them', () => {
  // promtool evaluates the groups a test does not order in a random order: an alert could then see
  // the recorded series of the previous evaluation, and the test pass or fail by chance.
  const groups = RULE_FILES.flatMap((file) => yamlFile<RuleFile>(file).groups.map((group) => group.name));
  for (const file of TEST_FILES) expect({ file, order: yamlFile<{ group_eval_order: string[] }>(file).group_eval_order }).toEqual({ file, order: groups });
});

it('every alert has unit tests that see it fire and see it quiet', () => {
  const tests = TEST_FILES.map((file) => fs.readFileSync(path.join(RULES_DIR, file), 'utf8')).join('\n');
  const names = alertNames();
  expect(names.sort()).toEqual([
    'WeftChecksumErrors', 'WeftNbdConnectionsRefused', 'WeftPoolNearlyFull', 'WeftPoolNotAnswering', 'WeftVolumeAvailabilityBudgetBurn', 'WeftVolumeDegraded', 'WeftVolumeFailingOver',
    'WeftVolumeLatencyBudgetBurn', 'WeftVolumeUnreplicated', 'WeftdDown',
  ]);
  for (const name of names) {
    const firing = new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels`);
    expect({ name, firing: firing.test(tests) }).toEqual({ name, firing: true });
  }
  // The burn-rate alerts stay quiet for the volumes within budget, the others in an empty exp_alerts.
  for (const name of ['WeftChecksumErrors', 'WeftNbdConnectionsRefused', 'WeftPoolNearlyFull', 'WeftPoolNotAnswering', 'WeftVolumeDegraded', 'WeftVolumeFailingOver', 'WeftVolumeUnreplicated', 'WeftdDown']) {
    expect({ name, quiet: tests.includes(`alertname: ${name}\n        exp_alerts: []`) }).toEqual({ name, quiet: true });
  }
});

it('promtool check rules fails on a broken expression', async () => {
  const dir = brokenCopy('alerts.yml', 'weft_pool_used_bytes / weft_pool_capacity_bytes > 0.85', 'weft_pool_used_bytes / > 0.85');
  copies.push(dir);
  const result = await promtool(['check', 'rules', ...RULE_FILES], dir);
  expect(result.code).not.toBe(0);
  expect(result.output).toMatch(/FAILED[\s\S]*parse error/);
});

it('promtool test rules fails when an alert no longer fires as its test expects', async () => {
  const dir = brokenCopy('alerts.yml', 'weft_pool_used_bytes / weft_pool_capacity_bytes > 0.85', 'weft_pool_used_bytes / weft_pool_capacity_bytes > 0.95');
  copies.push(dir);
  const result = await promtool(['test', 'rules', ...TEST_FILES], dir);
  expect(result.code).not.toBe(0);
  expect(result.output).toMatch(/FAILED:\s+alertname: WeftPoolNearlyFull, time: 20m/);
});
