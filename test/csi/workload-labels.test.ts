// The workload labels of weft_volume_info through the CSI calls a CO makes, on a real weftd's
// /metrics and in `weft attachment list`: the claim's name from the parameters csi-provisioner adds
// (--extra-create-metadata), carried by the volume context to NodePublishVolume; a Nomad allocation's
// job from Nomad's HTTP API (FakeNomad: no Nomad runs here), or empty with a warning when Nomad does
// not know the allocation or is gone, the publish going ahead; attachment records from before these
// fields existed.

import fs from 'node:fs';
import path from 'node:path';
import { PVC_NAME_KEY, PVC_NAMESPACE_KEY, POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY } from '../../adapters/csi/workload';
import type { AttachmentRecord } from '../../fabric/api/attachments';
import { parseExposition, valueOf } from '../exporters/prometheus/exposition';
import { BLOCK_WRITER } from '../helpers/csi-client';
import { cleanUpAfterTests, startCsiWeftd, type CsiWeftd } from '../helpers/csi-weftd';
import { FakeNomad } from '../helpers/fake-nomad';
import { makeTempDir } from '../helpers/weftd';

const MiB = 1024 * 1024;
const NOMAD_TOKEN = 'c0ffee00-0000-4000-8000-000000000002';
const ALLOC = '5b1e3a4c-9f2d-4e8a-b7c6-1d2e3f4a5b6c';
/** An allocation Nomad does not know (404), and one published while Nomad is gone. */
const UNKNOWN_ALLOC = '0c9d8e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f';
const LATE_ALLOC = '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';

let nomad: FakeNomad;
let node: CsiWeftd | undefined;

beforeAll(async () => {
  nomad = await FakeNomad.start({ token: NOMAD_TOKEN });
  nomad.addAllocation(ALLOC, 'web', 'cache');
  node = await startCsiWeftd('weft-labels-', {
    pools: [`default:${makeTempDir('weft-pool-')}:1GiB`],
    extraArgs: ['--nomad-addr', nomad.address],
    env: { NOMAD_TOKEN },
  });
});

cleanUpAfterTests(() => node);
afterAll(() => nomad?.close());

const weftd = () => node!.weftd;
const csi = () => node!.csi;
/** Staging and target paths, as a CO would make them. */
const root = () => node!.root;

/** weft_volume_info's series of a volume, as the labels of each. */
async function volumeInfo(volume: string): Promise<Record<string, string>[]> {
  const families = parseExposition(await (await fetch(`http://127.0.0.1:${weftd().metricsPort}/metrics`)).text());
  const series = families.get('weft_volume_info')?.series.filter((s) => s.labels.volume === volume) ?? [];
  for (const s of series) expect(valueOf(families, 'weft_volume_info', s.labels)).toBe(1);
  return series.map((s) => s.labels);
}

async function attachmentList(volume: string): Promise<{ text: string; json: AttachmentRecord[] }> {
  const text = await weftd().weft(['attachment', 'list', volume]);
  const json = await weftd().weft(['attachment', 'list', volume, '--output', 'json']);
  expect([text.code, json.code]).toEqual([0, 0]);
  return { text: text.stdout, json: JSON.parse(json.stdout) as AttachmentRecord[] };
}

/** The labels every weft_volume_info series of this node's default-class volumes has. */
const info = (volume: string, labels: Record<string, string>) => ({
  volume, class: 'default', node: weftd().nodeId, orchestrator: '', namespace: '', pvc: '', pod: '', alloc: '', job: '', nomad_job: '', task: '', ...labels,
});

async function createVolume(name: string, parameters: Record<string, string>): Promise<Record<string, string>> {
  const { volume } = await csi().call('CreateVolume', { name, parameters, volume_capabilities: [BLOCK_WRITER], capacity_range: { required_bytes: 16 * MiB } });
  return volume.volume_context;
}

const staging = (volume: string) => path.join(root(), 'staging', volume);

async function stage(volume: string, volume_context: Record<string, string>): Promise<void> {
  await csi().call('NodeStageVolume', { volume_id: volume, staging_target_path: staging(volume), volume_capability: BLOCK_WRITER, volume_context });
}

async function publish(volume: string, target: string, volume_context: Record<string, string>): Promise<void> {
  await csi().call('NodePublishVolume', { volume_id: volume, staging_target_path: staging(volume), target_path: target, volume_capability: BLOCK_WRITER, volume_context });
}

async function unpublishAllAndDelete(volume: string, targets: string[]): Promise<void> {
  for (const target of targets) await csi().call('NodeUnpublishVolume', { volume_id: volume, target_path: target });
  await csi().call('NodeUnstageVolume', { volume_id: volume, staging_target_path: staging(volume) });
  await csi().call('DeleteVolume', { volume_id: volume });
  expect(await volumeInfo(volume)).toEqual([]);
}

describe('Kubernetes: the claim', () => {
  it("labels the pod's volume with its claim, from CreateVolume's parameters through the volume context", async () => {
    const volume = 'pvc-5f8a3c1e';
    // What csi-provisioner --extra-create-metadata sends besides the StorageClass's parameters.
    const claim = { [PVC_NAME_KEY]: 'data-web-0', [PVC_NAMESPACE_KEY]: 'shop', 'csi.storage.k8s.io/pv/name': volume };
    const context = await createVolume(volume, { replicas: '1', ...claim });
    expect(context).toEqual({ class: 'default', [PVC_NAME_KEY]: 'data-web-0', [PVC_NAMESPACE_KEY]: 'shop' });

    // kubelet passes the PersistentVolume's volumeAttributes (the context above), and the pod on publish.
    await stage(volume, context);
    const pod = { [POD_NAME_KEY]: 'web-0', [POD_NAMESPACE_KEY]: 'shop', [POD_UID_KEY]: 'uid-1' };
    const target = path.join(root(), 'pods', 'uid-1', 'volumeDevices', volume);
    await publish(volume, target, { ...context, ...pod });

    expect(await volumeInfo(volume)).toEqual([info(volume, { orchestrator: 'kubernetes', namespace: 'shop', pod: 'web-0', pvc: 'data-web-0' })]);
    const listed = await attachmentList(volume);
    expect(listed.text).toMatch(new RegExp(`^${volume} .* pod shop/web-0 \\(pvc data-web-0\\) `, 'm'));
    expect(listed.json[0].workloads).toEqual([expect.objectContaining({ podName: 'web-0', pvcName: 'data-web-0', pvcNamespace: 'shop', targetPath: target })]);
    await unpublishAllAndDelete(volume, [target]);
  });
});

describe('Nomad: the job of the allocation', () => {
  const targetFor = (alloc: string) => path.join(root(), 'per-alloc', alloc, 'shared', 'rw-block-device-single-node-writer');

  it("labels each allocation's volume with its job as Nomad tells it; without an answer the job is empty, a warning logged, the publish done", async () => {
    // Nomad's CreateVolume carries only the volume's own parameters: the context has no claim.
    const volume = 'shared';
    const context = await createVolume(volume, {});
    expect(context).toEqual({ class: 'default' });
    await stage(volume, context);

    await publish(volume, targetFor(ALLOC), context);
    await publish(volume, targetFor(UNKNOWN_ALLOC), context);
    const lookups = nomad.requests.filter((r) => r.path.startsWith('/v1/allocation/'));
    expect(lookups.map((r) => [r.method, r.path, r.token])).toEqual([
      ['GET', `/v1/allocation/${ALLOC}`, NOMAD_TOKEN],
      ['GET', `/v1/allocation/${UNKNOWN_ALLOC}`, NOMAD_TOKEN],
    ]);
    await nomad.close();
    await publish(volume, targetFor(LATE_ALLOC), context);

    const nomadInfo = (alloc: string, job: string) => info(volume, { orchestrator: 'nomad', alloc, job, nomad_job: job });
    const series = await volumeInfo(volume);
    expect(series).toHaveLength(3);
    expect(series).toEqual(expect.arrayContaining([nomadInfo(ALLOC, 'web'), nomadInfo(UNKNOWN_ALLOC, ''), nomadInfo(LATE_ALLOC, '')]));
    const warnings = weftd().logs().split('\n').filter((line) => line.includes('could not look up the job of a Nomad allocation'));
    expect(warnings).toEqual([
      expect.stringMatching(new RegExp(`"allocationId":"${UNKNOWN_ALLOC}".*HTTP 404\\): alloc not found`)),
      expect.stringMatching(new RegExp(`"allocationId":"${LATE_ALLOC}".*cannot reach Nomad at ${nomad.address}`)),
    ]);
    const listed = await attachmentList(volume);
    expect(listed.text).toContain(`alloc ${ALLOC} (job web, group cache)`);
    expect(listed.json[0].workloads.find((w) => w.allocationId === ALLOC)).toMatchObject({ jobId: 'web', taskGroup: 'cache' });
    await unpublishAllAndDelete(volume, [ALLOC, UNKNOWN_ALLOC, LATE_ALLOC].map(targetFor));
  });
});

describe('attachment records stored before claims and jobs were recorded', () => {
  it('are read as they are: empty pvc and job labels, listed by weft attachment list', async () => {
    await createVolume('older', {});
    await weftd().stop();
    const record = {
      volume: 'older', nodeId: weftd().nodeId, devicePath: '/dev/loop9', method: 'nbdfuse-loop', stagingPath: '/staging/older',
      workloads: [{ orchestrator: 'nomad', allocationId: ALLOC, targetPath: '/local/csi/per-alloc/x' }], attachedAt: '2026-01-02T03:04:05.000Z',
    };
    fs.writeFileSync(path.join(weftd().dataDir, 'attachments.json'), JSON.stringify([record], null, 2));
    await weftd().start();
    expect(await volumeInfo('older')).toEqual([info('older', { orchestrator: 'nomad', alloc: ALLOC })]);
    const listed = await attachmentList('older');
    expect(listed.text).toMatch(new RegExp(`^older .* alloc ${ALLOC} +2026-01-02`, 'm'));
    expect(listed.json[0].workloads).toEqual([expect.objectContaining({ allocationId: ALLOC, jobId: '', pvcName: '' })]);
  });
});
