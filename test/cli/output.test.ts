// Unit tests of the CLI's output: aligned tables, detail views, times and durations, and the
// views of volumes, snapshots, pools, nodes, attachments and verify reports built on them.

import { ATTACHMENT_COLUMNS } from '../../fabric/cli/attachment-commands';
import { POOL_COLUMNS } from '../../fabric/cli/pool-commands';
import { nodeDetails } from '../../fabric/cli/node-commands';
import { details, formatDuration, formatTime, table, type Column } from '../../fabric/cli/output';
import { SNAPSHOT_COLUMNS } from '../../fabric/cli/snapshot-commands';
import { verifyOutcome, VOLUME_COLUMNS, volumeDetails } from '../../fabric/cli/volume-commands';
import type { VolumeInfo } from '../../fabric/volume/types';

const VOLUME: VolumeInfo = {
  name: 'data',
  class: 'ssd',
  sizeBytes: 10 * 2 ** 30,
  allocatedBytes: 1536,
  snapshotCount: 2,
  connections: 1,
  checksumErrors: 0,
  epoch: 0,
  createdAt: '2026-11-22T02:41:57.123Z',
  layers: [{ class: 'ssd', allocatedBytes: 1536 }],
};

describe('table', () => {
  const columns: Column<[string, number]>[] = [
    { header: 'NAME', value: (row) => row[0] },
    { header: 'N', value: (row) => String(row[1]), alignRight: true },
    { header: 'LAST', value: () => 'x' },
  ];

  it('aligns columns two spaces apart, numbers to the right, without trailing blanks', () => {
    expect(table(columns, [['a', 1], ['longer-name', 100]])).toBe(
      ['NAME           N  LAST', 'a              1  x', 'longer-name  100  x'].join('\n'),
    );
  });

  it('prints only the headers when there are no rows', () => {
    expect(table(columns, [])).toBe('NAME  N  LAST');
  });
});

describe('details', () => {
  it('aligns the values after the labels', () => {
    expect(details([['Name', 'data'], ['Connections', '3']])).toBe('Name:         data\nConnections:  3');
  });
});

describe('formatTime and formatDuration', () => {
  it.each([
    ['2026-11-22T02:41:57.123Z', '2026-11-22 02:41:57Z'],
    ['2026-11-22T02:41:57+02:00', '2026-11-22 02:41:57+02:00'],
    ['yesterday', 'yesterday'],
    ['', '-'],
  ])('formatTime(%j) = %j', (iso, text) => expect(formatTime(iso)).toBe(text));

  it.each([
    [0, '0s'],
    [59, '59s'],
    [3600, '1h 0m 0s'],
    [93784, '1d 2h 3m 4s'],
  ])('formatDuration(%d) = %j', (seconds, text) => expect(formatDuration(seconds)).toBe(text));
});

describe('views', () => {
  it('lists volumes with human sizes and a dash for no source', () => {
    const clone = { ...VOLUME, name: 'copy', sourceSnapshot: 'data@s1' };
    expect(table(VOLUME_COLUMNS, [VOLUME, clone]).split('\n')).toEqual([
      'NAME  CLASS    SIZE  ALLOCATED  SNAPSHOTS  CONNECTIONS  SOURCE   CREATED',
      'data  ssd    10 GiB    1.5 KiB          2            1  -        2026-11-22 02:41:57Z',
      'copy  ssd    10 GiB    1.5 KiB          2            1  data@s1  2026-11-22 02:41:57Z',
    ]);
  });

  it('shows one volume with exact byte counts', () => {
    expect(volumeDetails(VOLUME)).toContain('Size:             10 GiB (10737418240 bytes)');
    expect(volumeDetails(VOLUME)).toContain('Source:           -');
  });

  it('shows where each layer of a volume lives, from the head down', () => {
    const clone: VolumeInfo = {
      ...VOLUME,
      name: 'copy',
      sourceSnapshot: 'data@s1',
      layers: [
        { class: 'ssd', allocatedBytes: 1536 },
        { snapshot: { volume: 'data', name: 's1' }, class: 'hdd', allocatedBytes: 64 * 2 ** 20 },
        { deleted: true, class: 'hdd', allocatedBytes: 4096 },
      ],
    };
    expect(volumeDetails(clone).split('\n').slice(-5)).toEqual([
      'Layers (head first):',
      'LAYER             CLASS  ALLOCATED',
      'head              ssd      1.5 KiB',
      'data@s1           hdd       64 MiB',
      'deleted snapshot  hdd        4 KiB',
    ]);
  });

  it('lists snapshots and pools', () => {
    const snapshot = { volume: 'data', name: 's1', sizeBytes: 2 ** 30, exclusiveBytes: 0, createdAt: VOLUME.createdAt, class: 'ssd', checksumErrors: 0 };
    expect(table(SNAPSHOT_COLUMNS, [snapshot])).toBe(
      'VOLUME  SNAPSHOT   SIZE  EXCLUSIVE  CLASS  CREATED\ndata    s1        1 GiB        0 B  ssd    2026-11-22 02:41:57Z',
    );
    const pool = { class: 'hdd', capacityBytes: 4 * 2 ** 40, usedBytes: 2 ** 40, provisionedBytes: 8 * 2 ** 40, members: [{ path: '/dev/sdb', sizeBytes: 4 * 2 ** 40 }], state: 'stalled' as const };
    expect(table(POOL_COLUMNS, [pool]).split('\n')).toEqual([
      'CLASS  STATE    CAPACITY   USED  USED%  PROVISIONED  MEMBERS',
      'hdd    stalled     4 TiB  1 TiB    25%        8 TiB  /dev/sdb',
    ]);
  });

  it('lists attachments with the same readable times as the other tables', () => {
    const attachment = {
      volume: 'data', nodeId: 'n1', devicePath: '/dev/nbd0', method: 'kernel-nbd', stagingPath: '/staging/data',
      workloads: [{ orchestrator: 'kubernetes', podNamespace: 'db', podName: 'pg-0' }], attachedAt: VOLUME.createdAt,
    };
    expect(table(ATTACHMENT_COLUMNS, [attachment]).split('\n')).toEqual([
      'VOLUME  NODE  DEVICE     METHOD      WORKLOADS    SINCE',
      'data    n1    /dev/nbd0  kernel-nbd  pod db/pg-0  2026-11-22 02:41:57Z',
    ]);
  });

  it("names each attachment's workloads with their claim or job where known", () => {
    const workloads = [
      { orchestrator: 'kubernetes', podNamespace: 'db', podName: 'pg-0', pvcName: 'data-pg-0', pvcNamespace: 'db' },
      { orchestrator: 'kubernetes', pvcName: 'data-pg-1', pvcNamespace: 'db' },
      { orchestrator: 'nomad', allocationId: '5b1e3a4c', jobId: 'web', taskGroup: 'cache' },
      // As gRPC gives a record stored before jobs were looked up: empty strings.
      { orchestrator: 'nomad', allocationId: '0c9d8e7f', jobId: '', taskGroup: '' },
    ];
    const attachment = { volume: 'data', nodeId: 'n1', devicePath: '/dev/nbd0', method: 'kernel-nbd', stagingPath: '/staging/data', workloads, attachedAt: VOLUME.createdAt };
    expect(ATTACHMENT_COLUMNS.find((c) => c.header === 'WORKLOADS')!.value(attachment)).toBe(
      'pod db/pg-0 (pvc data-pg-0), pvc db/data-pg-1, alloc 5b1e3a4c (job web, group cache), alloc 0c9d8e7f',
    );
  });

  it('shows the node with its uptime', () => {
    const text = nodeDetails({
      nodeId: 'n1', version: '0.1.0', listenAddress: '10.0.0.5', nbdPort: 10809, apiPort: 10810, metricsPort: 9580,
      dataDir: '/var/lib/weft', formatVersion: 1, startedAt: '2026-11-22T00:00:00.000Z', uptimeSeconds: 3661,
    });
    expect(text.split('\n')).toContain('API port:        10810');
    expect(text.split('\n')).toContain('Uptime:          1h 1m 1s');
  });
});

describe('verifyOutcome', () => {
  it('succeeds when there are no bad blocks', () => {
    const report = { volume: 'data', checkedBlocks: 12, badBlockOffsets: [] };
    expect(verifyOutcome(report)).toEqual({ json: report, text: 'verified volume "data": 12 blocks checked, no bad blocks', failure: undefined });
  });

  it('lists each bad offset and fails', () => {
    const outcome = verifyOutcome({ volume: 'data', checkedBlocks: 12, badBlockOffsets: [4096, 8192] });
    expect(outcome.text.split('\n')).toEqual([
      'verified volume "data": 12 blocks checked, 2 bad blocks',
      'bad block at offset 4096',
      'bad block at offset 8192',
    ]);
    expect(outcome.failure).toBe('volume "data" has 2 bad blocks');
  });

  it("lists a replicated volume's copies, the primary first, and the copies skipped", () => {
    const report = {
      volume: 'db',
      checkedBlocks: 4096,
      badBlockOffsets: [],
      replicas: [
        { node: 'n1', comparedBlocks: 4096, checksumRepairedBlocks: 1, mismatchRepairedBlocks: 0 },
        { node: 'n2', comparedBlocks: 4096, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 2 },
      ],
      skippedReplicas: [{ node: 'n3', reason: 'it is out: a resync brings it in sync, not a verify' }],
    };
    expect(verifyOutcome(report)).toEqual({
      json: report,
      text: [
        'verified volume "db": 4096 blocks checked, 3 repaired, no bad blocks',
        'NODE          COMPARED  REPAIRED (CHECKSUM)  REPAIRED (MISMATCH)',
        'n1 (primary)      4096                    1                    0',
        'n2                4096                    0                    2',
        'skipped n3: it is out: a resync brings it in sync, not a verify',
      ].join('\n'),
      failure: undefined,
    });
  });

  it('fails for a block of a replicated volume that no copy reads good', () => {
    const replicas = [{ node: 'n1', comparedBlocks: 8, checksumRepairedBlocks: 0, mismatchRepairedBlocks: 0 }];
    const outcome = verifyOutcome({ volume: 'db', checkedBlocks: 8, badBlockOffsets: [4096], replicas, skippedReplicas: [] });
    expect(outcome.text.split('\n').slice(0, 2)).toEqual(['verified volume "db": 8 blocks checked, 0 repaired, 1 bad block', 'bad block at offset 4096 (no copy reads it good)']);
    expect(outcome.failure).toBe('volume "db" has 1 bad block');
  });
});
