// deploy/systemd/weftd.service starts the installed weftd with flags it accepts, and does not restart
// it in a loop when the configuration is wrong (exit code 2).

import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../fabric/config';
import { DEPLOY_DIR, dockerfileFacts } from './dockerfile';
import { flagValue, parseWeftdArgs } from './weftd-args';

const unit = fs.readFileSync(path.join(DEPLOY_DIR, 'systemd', 'weftd.service'), 'utf8');
const setting = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];

describe('weftd.service', () => {
  it('runs the weftd command the package installs (found on systemd\'s search path, wherever npm put it), with flags weftd accepts', () => {
    const [binary, ...args] = (setting('ExecStart') ?? '').split(/\s+/);
    expect(binary).toBe(path.basename(dockerfileFacts().weftdPath));
    const packageJson = JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, '..', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(Object.keys(packageJson.bin)).toContain(binary);
    expect(args.pop()).toBe('$WEFTD_ARGS');
    const config = parseWeftdArgs(args);
    expect(config.csi?.endpoint).toBe(flagValue(args, '--csi-endpoint'));
  });

  it('puts the CSI socket in the runtime directory systemd creates for it', () => {
    expect(flagValue((setting('ExecStart') ?? '').split(/\s+/), '--csi-endpoint')).toBe(`unix:///run/${setting('RuntimeDirectory')}/csi.sock`);
  });

  it('stops with SIGTERM and gives up on a bad configuration instead of restarting', () => {
    expect(setting('KillSignal')).toBe('SIGTERM');
    expect(setting('RestartPreventExitStatus')).toBe(String(new ConfigError('x').exitCode));
  });

  it('stops or restarts weftd alone, not the attach helpers in its cgroup (the mounts on them outlive weftd)', () => {
    expect(setting('KillMode')).toBe('process');
  });
});
