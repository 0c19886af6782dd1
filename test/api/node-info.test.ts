// Unit tests of what GetNodeInfo answers: the daemon's node info plus the API port and uptime.

import { nodeStatus, type NodeInfo } from '../../fabric/api/node-info';

const NODE: NodeInfo = {
  nodeId: 'node-1',
  version: '0.1.0',
  listenAddress: '10.0.0.5',
  nbdPort: 10809,
  metricsPort: 9580,
  dataDir: '/var/lib/weft',
  formatVersion: 1,
  startedAt: new Date('2026-01-01T00:00:00.000Z'),
};

describe('nodeStatus', () => {
  it('adds the API port and whole seconds of uptime', () => {
    expect(nodeStatus(NODE, 10810, new Date('2026-01-02T01:02:03.900Z'))).toEqual({
      nodeId: 'node-1',
      version: '0.1.0',
      listenAddress: '10.0.0.5',
      nbdPort: 10809,
      apiPort: 10810,
      metricsPort: 9580,
      dataDir: '/var/lib/weft',
      formatVersion: 1,
      startedAt: '2026-01-01T00:00:00.000Z',
      uptimeSeconds: 86400 + 3723,
    });
  });

  it('never reports a negative uptime when clocks step back', () => {
    expect(nodeStatus(NODE, 1, new Date('2025-12-31T23:59:00.000Z')).uptimeSeconds).toBe(0);
  });
});
