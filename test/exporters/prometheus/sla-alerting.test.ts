// The SLA chain for real: a weftd whose nvme pool sits on a slow disk (nbdkit's delay filter under
// its only member) and whose ssd pool is healthy, fio writing through NBD to a volume of each, a real
// Prometheus scraping it with the shipped rules, and a real Alertmanager. The write count Prometheus
// shows agrees with fio's, every recording rule gives series with its labels, and the latency
// alert fires for the volume on the slow disk only, and reaches Alertmanager and its receiver.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { WeftClient } from '../../../fabric/api/client';
import { runFio, type FioSide } from '../../bench/fio';
import { startAlertmanager, type AlertmanagerHandle, type ReceivedAlert } from '../../helpers/alertmanager';
import { startPrometheus, type PrometheusHandle } from '../../helpers/prometheus';
import { weftJson } from '../../helpers/replicas';
import { startSlowDevice, type NbdkitDevice } from '../../helpers/nbdkit-device';
import { waitFor } from '../../helpers/wait-for';
import { cleanupAll, makeTempDir, REPO_ROOT, startWeftd, type WeftdHandle } from '../../helpers/weftd';

const MiB = 1024 * 1024;
const RULES_DIR = path.join(REPO_ROOT, 'exporters', 'prometheus', 'rules');
const RULE_FILES = ['recording.yml', 'alerts.yml'].map((file) => path.join(RULES_DIR, file));
/** Every read and write of the slow disk takes this long: 5 times the objective below. */
const SLOW_DISK_MS = 50;
/** Both classes promise the same; 10 ms is a bucket bound, so it is measured exactly. */
const OBJECTIVES = '{objectives: {readLatencyP99: 10ms, writeLatencyP99: 10ms, availability: 99.9%}}';

/** The volumes, their classes and the pods that use them. */
const VOLUMES = [
  { name: 'web', class: 'ssd', pod: 'web-0' },
  { name: 'db', class: 'nvme', pod: 'db-0' },
];

/** The labels the series of each recording rule level carry (level:metric:operations). */
const LEVEL_LABELS: Record<string, string[]> = {
  weft_volume: ['volume'],
  weft_workload: ['volume', 'orchestrator', 'namespace', 'pod'],
  weft_volume_operation: ['volume', 'operation'],
  weft_class_operation: ['class', 'operation'],
  weft: ['le'],
};

let slow: NbdkitDevice | undefined;
let alertmanager: AlertmanagerHandle | undefined;

afterAll(async () => {
  await alertmanager?.close();
  await slow?.unmount();
  await cleanupAll();
});

describe('SLA monitoring on a real Prometheus and Alertmanager', () => {
  let weftd: WeftdHandle;
  let prometheus: PrometheusHandle;
  /** fio's write side per volume. */
  const fioWrites: Record<string, FioSide> = {};
  /** When both fio runs had ended, in seconds since the epoch. */
  let fioEnded = 0;

  beforeAll(async () => {
    const dir = makeTempDir('weft-sla-');
    alertmanager = await startAlertmanager();
    slow = await startSlowDevice(dir, 256 * MiB, SLOW_DISK_MS);
    const config = path.join(dir, 'weftd.yaml');
    fs.writeFileSync(config, `classes:\n  ssd: ${OBJECTIVES}\n  nvme: ${OBJECTIVES}\n`);
    fs.mkdirSync(path.join(dir, 'ssd'));
    weftd = await startWeftd({
      dataDir: path.join(dir, 'data'),
      pools: [`ssd:${path.join(dir, 'ssd')}:256MiB`, `nvme:${slow.file}`],
      extraArgs: ['--config', config],
    });
    const api = new WeftClient(`127.0.0.1:${weftd.apiPort}`);
    try {
      for (const volume of VOLUMES) {
        await weftJson(weftd, ['volume', 'create', volume.name, '--size', '32MiB', '--class', volume.class]);
        // As the CSI node service records a pod's stage, for the per-workload series.
        await api.recordAttachment({
          volume: volume.name, nodeId: weftd.nodeId, devicePath: `/dev/loop-${volume.name}`, method: 'nbdfuse-loop', stagingPath: `/staging/${volume.name}`,
          workloads: [{ orchestrator: 'kubernetes', podName: volume.pod, podNamespace: 'shop', podUid: `uid-${volume.pod}` }],
        });
      }
    } finally {
      api.close();
    }
    prometheus = await startPrometheus([`127.0.0.1:${weftd.metricsPort}`], { ruleFiles: RULE_FILES, alertmanager: alertmanager.address });

    // Half reads, half writes, for 10 s on each volume at once: web paced at 200 IOPS a side, one
    // at a time, db as fast as its disk lets it.
    const fio = (volume: string, extra: string[]) =>
      runFio([`--name=${volume}`, `--uri=${weftd.nbdUri(volume)}`, '--rw=randrw', '--rwmixread=50', '--bs=4k', '--time_based', '--runtime=10', ...extra], path.join(dir, `fio-${volume}.json`));
    const [web, db] = await Promise.all([fio('web', ['--iodepth=1', '--rate_iops=200,200']), fio('db', ['--iodepth=2'])]);
    fioWrites.web = web.jobs[0].write;
    fioWrites.db = db.jobs[0].write;
    fioEnded = Date.now() / 1000;
  }, 120_000);

  test.each(VOLUMES.map((volume) => volume.name))('the write count of %s in Prometheus is within 5%% of what fio wrote', async (volume) => {
    const written = fioWrites[volume].total_ios;
    expect(written).toBeGreaterThan(50);
    // From a scrape taken after fio had ended.
    const selector = `weft_volume_operations_total{volume="${volume}", operation="write"}`;
    const sample = async () => (await prometheus.query(`sum(${selector}) and on () max(timestamp(${selector})) > ${fioEnded}`))[0]?.value[1];
    await waitFor(async () => (await sample()) !== undefined, 15_000, 250);
    const counted = Number(await sample());
    expect({ counted, written, within5Percent: Math.abs(counted - written) <= 0.05 * written }).toEqual({ counted, written, within5Percent: true });
  });

  test('every recording rule gives series with the labels of its level, for both volumes where it is per volume', async () => {
    const groups = (YAML.parse(fs.readFileSync(RULE_FILES[0], 'utf8')) as { groups: { rules: { record: string }[] }[] }).groups;
    const records = groups.flatMap((group) => group.rules.map((rule) => rule.record));
    expect(records.length).toBeGreaterThanOrEqual(27);
    const answers: Record<string, { empty: boolean; missingLabels: string[]; volumes?: string[] }> = {};
    for (const record of records) {
      const series = await prometheus.query(record);
      const labels = LEVEL_LABELS[record.split(':')[0]];
      const missingLabels = labels.filter((label) => !series.every((one) => label in one.metric));
      const volumes = labels.includes('volume') ? [...new Set(series.map((one) => one.metric.volume))].sort() : undefined;
      answers[record] = { empty: series.length === 0, missingLabels, ...(volumes ? { volumes } : {}) };
    }
    const expected = Object.fromEntries(records.map((record) => [record, {
      empty: false, missingLabels: [], ...(LEVEL_LABELS[record.split(':')[0]].includes('volume') ? { volumes: ['db', 'web'] } : {}),
    }]));
    expect(answers).toEqual(expected);
  });

  test('the latency alert fires for the volume on the slow disk, not the other, and Alertmanager and its receiver get it', async () => {
    const isBreach = (alert: { labels: Record<string, string> }) =>
      alert.labels.alertname === 'WeftVolumeLatencyBudgetBurn' && alert.labels.volume === 'db' && alert.labels.operation === 'write' && alert.labels.severity === 'page';
    const held = async () => (await alertmanager!.alerts()).filter(isBreach);
    await waitFor(async () => (await held()).length > 0 && alertmanager!.notified.some(isBreach), 60_000, 500);

    const [inAlertmanager] = await held();
    expect(inAlertmanager.labels).toMatchObject({ class: 'nvme', operation: 'write' });
    expect(inAlertmanager.annotations.summary).toBe('Volume db: writes slower than class nvme promises');
    expect(inAlertmanager.status).toMatchObject({ state: 'active' });
    const notification = alertmanager!.notified.find(isBreach) as ReceivedAlert;
    expect(notification.status).toBe('firing');

    // Nothing else is wrong: every alert Prometheus has is about db's latency.
    const firing = await prometheus.alerts();
    expect(firing.map((alert) => ({ alertname: alert.labels.alertname, volume: alert.labels.volume }))).toEqual(
      firing.map(() => ({ alertname: 'WeftVolumeLatencyBudgetBurn', volume: 'db' })),
    );
    // What it measured: nearly every write of db slower than 10 ms, none of web's.
    const slowShare = async (volume: string) =>
      Number((await prometheus.query(`weft_volume_operation:latency_slo_errors:ratio_rate5m{volume="${volume}", operation="write"}`))[0].value[1]);
    expect(await slowShare('db')).toBeGreaterThan(0.9);
    expect(await slowShare('web')).toBeLessThan(0.144);
  });
});
