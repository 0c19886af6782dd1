// Unit tests of the proto's loading: it is found from the compiled code's directory and from the
// source tree, and it declares every RPC the server and the client use.

import * as path from 'path';
import { protoPath, serviceDefinition } from '../../fabric/api/definition';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const PROTO = path.join(REPO_ROOT, 'fabric', 'api', 'proto', 'weft', 'v1', 'weft.proto');

describe('protoPath', () => {
  it('finds the proto from dist/fabric/api and from fabric/api', () => {
    expect(protoPath(path.join(REPO_ROOT, 'dist', 'fabric', 'api'))).toBe(PROTO);
    expect(protoPath(path.join(REPO_ROOT, 'fabric', 'api'))).toBe(PROTO);
  });

  it('says what it looked for when there is no proto above', () => {
    expect(() => protoPath('/')).toThrow(/weft\.proto not found above \//);
  });
});

describe('serviceDefinition', () => {
  it.each([
    ['VolumeService', ['CreateVolume', 'ListVolumes', 'GetVolume', 'ResizeVolume', 'DeleteVolume', 'VerifyVolume', 'RevertVolume', 'VolumeStats']],
    ['SnapshotService', ['CreateSnapshot', 'ListSnapshots', 'DeleteSnapshot']],
    ['PoolService', ['ListClasses', 'ListPools']],
    ['NodeService', ['GetNodeInfo', 'ListNodes', 'ForgetNode']],
    ['AttachmentService', ['ClaimVolume', 'ReleaseVolume', 'RecordAttachment', 'RemoveAttachment', 'ListAttachments']],
    ['ReplicaService', ['CreateCopy', 'DeleteCopy', 'ControlCopy', 'TrackAbsence', 'GetActivity', 'TrackActivity', 'BlockChecksums', 'CopySnapshots']],
  ] as const)('%s has %j', (service, methods) => {
    const definition = serviceDefinition(service);
    expect(Object.keys(definition).sort()).toEqual([...methods].sort());
    expect(definition[methods[0]].path).toBe(`/weft.v1.${service}/${methods[0]}`);
  });

  it('streams only VerifyVolume, from the server', () => {
    const verify = serviceDefinition('VolumeService').VerifyVolume;
    expect([verify.requestStream, verify.responseStream]).toEqual([false, true]);
  });

  it('carries uint64 sizes as numbers, not Longs', () => {
    const { requestSerialize, requestDeserialize } = serviceDefinition('VolumeService').ResizeVolume;
    const decoded = requestDeserialize(requestSerialize({ name: 'v', sizeBytes: 2 ** 40 + 4096 })) as { sizeBytes: unknown };
    expect(decoded.sizeBytes).toBe(2 ** 40 + 4096);
  });
});
