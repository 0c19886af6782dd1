// deploy/mesos: the storage local resource provider config, disk profiles and example task have the
// shapes mesos.proto gives them, and run the real weftd, on the socket Mesos names in CSI_ENDPOINT.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseParameters } from '../../adapters/csi/parameters';
import { FS_TYPES } from '../../adapters/csi/validate';
import {
  CSI_ENDPOINT_ENV, PLUGIN_TYPE, RESOURCE_PROVIDER_TYPE, type DiskProfiles, type ResourceProviderInfo,
} from '../../adapters/mesos/plugin-config';
import { DEPLOY_DIR, dockerfileFacts } from './dockerfile';
import { MESOS_SCHEMA } from './mesos-schema';
import { checkValue } from './schema';
import { parseWeftdArgs } from './weftd-args';

const MiB = 1024 * 1024;

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'mesos', file), 'utf8')) as T;

function problems(value: unknown, type: string): string[] {
  const errors: string[] = [];
  checkValue(MESOS_SCHEMA, value, type, '', type, errors);
  return errors;
}

interface Task {
  resources: { name: string; reservations?: { role: string }[]; disk?: { source: { type: string; profile?: string }; volume?: { container_path: string } } }[];
}

const provider = readJson<ResourceProviderInfo>('resource-provider.json');
const profiles = readJson<DiskProfiles>('disk-profiles.json');
const task = readJson<Task>('task.json');
const container = provider.storage.plugin.containers[0];

describe('the JSON shapes', () => {
  it.each([
    ['resource-provider.json', 'ResourceProviderInfo', provider],
    ['disk-profiles.json', 'UriVolumeProfileMapping', profiles],
    ['task.json', 'TaskInfo', task],
  ])('%s is a valid %s', (_, type, value) => {
    expect(problems(value, type)).toEqual([]);
  });

  it.each([
    ['a misspelled field', { ...container, service: ['NODE_SERVICE'] }, /service: unknown field of CSIPluginContainerInfo/],
    ['an unknown service', { ...container, services: ['NODE'] }, /"NODE" is not one of CONTROLLER_SERVICE, NODE_SERVICE/],
    ['a resource without its type', { ...container, resources: [{ name: 'cpus', scalar: { value: 1 } }] }, /resources\[0\]\.type: required by Resource/],
    ['a number as a string', { ...container, resources: [{ name: 'cpus', type: 'SCALAR', scalar: { value: '1' } }] }, /value: expected a number/],
  ])('a container config with %s is rejected', (_, value, message) => {
    expect(problems(value, 'CSIPluginContainerInfo').join('\n')).toMatch(message);
  });
});

describe('the resource provider', () => {
  it('is a storage local resource provider of the weft CSI plugin', () => {
    expect(provider.type).toBe(RESOURCE_PROVIDER_TYPE);
    expect(provider.storage.plugin.type).toBe(PLUGIN_TYPE);
    // Mesos serves each service from the first container that lists it: weftd serves both.
    expect(container.services).toEqual(['CONTROLLER_SERVICE', 'NODE_SERVICE']);
  });

  it('runs the image the Dockerfile builds, at the path the Dockerfile installs weftd', () => {
    const image = dockerfileFacts();
    expect(container.container?.mesos?.image?.docker.name).toBe(image.tag);
    expect(container.command?.shell).not.toBe(false);
    expect(container.command?.value).toMatch(new RegExp(`^exec ${image.weftdPath} `));
  });

  it('keeps weftd\'s data on the host', () => {
    expect(container.container?.volumes).toContainEqual({ container_path: '/var/lib/weft', host_path: '/var/lib/weft', mode: 'RW' });
  });

  describe('its command, run by /bin/sh as Mesos runs it', () => {
    let dir: string;
    beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-mesos-'))));
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** The argv weftd would get: the command with weftd replaced by a stub that prints its arguments. */
    function weftdArgv(env: NodeJS.ProcessEnv): string[] {
      const stub = path.join(dir, 'weftd-stub');
      fs.writeFileSync(stub, `#!/bin/sh\nexec "${process.execPath}" -e 'process.stdout.write(JSON.stringify(process.argv.slice(1)))' -- "$@"\n`, { mode: 0o755 });
      const command = (container.command?.value ?? '').replace(dockerfileFacts().weftdPath, stub);
      return JSON.parse(execFileSync('/bin/sh', ['-c', command], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' })) as string[];
    }

    it('serves CSI on the socket Mesos names in CSI_ENDPOINT, with both roles, in flags weftd accepts', () => {
      const endpoint = `unix://${dir}/endpoint/csi.sock`;
      const config = parseWeftdArgs(weftdArgv({ [CSI_ENDPOINT_ENV]: endpoint }));
      expect(config.csi).toEqual({ endpoint, role: 'both' });
      expect(config.dataDir).toBe('/var/lib/weft');
      expect(config.nodeId).toBe(os.hostname());
    });

    it('fits weftd in the memory Mesos limits it to: its NBD in-flight budget and its initial heap take at most half', () => {
      const config = parseWeftdArgs(weftdArgv({ [CSI_ENDPOINT_ENV]: `unix://${dir}/csi.sock` }));
      const heapMiB = Number(/--initial-heap-size=(\d+)/.exec(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'bin', 'weftd'), 'utf8').split('\n')[0])?.[1]);
      const memMiB = container.resources?.find((resource) => resource.name === 'mem')?.scalar?.value ?? 0;
      expect(heapMiB).toBeGreaterThan(0);
      expect(config.maxInflightBytes / MiB + heapMiB).toBeLessThanOrEqual(memMiB / 2);
    });

    it('makes weftd refuse to start when Mesos gives no endpoint, rather than serve elsewhere', () => {
      expect(() => parseWeftdArgs(weftdArgv({}))).toThrow(/--csi-endpoint/);
    });
  });
});

describe('the disk profiles', () => {
  it.each(Object.entries(profiles.profile_matrix))('%s selects the weft plugin and makes volumes CreateVolume accepts', (_, profile) => {
    expect(profile.csi_plugin_type_selector.plugin_type).toBe(PLUGIN_TYPE);
    expect(() => parseParameters(profile.create_parameters ?? {})).not.toThrow();
    expect(FS_TYPES).toContain(profile.volume_capabilities.mount?.fs_type);
  });
});

describe('the example task', () => {
  it('uses a MOUNT disk of a weft profile, reserved for the provider\'s role, mounted inside its sandbox', () => {
    const disk = task.resources.find((resource) => resource.name === 'disk');
    expect(disk?.disk?.source.type).toBe('MOUNT');
    expect(Object.keys(profiles.profile_matrix)).toContain(disk?.disk?.source.profile);
    expect(disk?.reservations?.map((reservation) => reservation.role)).toEqual(provider.default_reservations?.map((reservation) => reservation.role));
    expect(disk?.disk?.volume?.container_path).not.toMatch(/^\//);
  });
});
