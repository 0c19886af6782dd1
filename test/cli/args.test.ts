// Unit tests of the CLI's argument parsing: sizes, names, VOL@SNAP and the endpoint. Every
// refusal is a usage error (exit code 2) with a message that says what to type instead.

import { endpointArg, nameArg, sizeArg, snapshotArg } from '../../fabric/cli/args';
import { CliError, EXIT_USAGE } from '../../fabric/cli/errors';

function usageMessage(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    if (error instanceof CliError && error.exitCode === EXIT_USAGE) return error.message;
    throw error;
  }
  throw new Error('expected a usage error');
}

describe('sizeArg', () => {
  it.each([
    ['512MiB', 512 * 2 ** 20],
    ['10G', 10 * 2 ** 30],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['1GB', 1e9],
    ['4096', 4096],
  ])('reads %s as %d bytes', (text, bytes) => expect(sizeArg('--size', text)).toBe(bytes));

  it.each([
    ['12XB', '--size: invalid size "12XB"'],
    ['-1G', '--size: invalid size "-1G"'],
    ['0', '--size must be greater than 0'],
    ['', '--size: invalid size ""'],
  ])('refuses %j', (text, message) => expect(usageMessage(() => sizeArg('--size', text))).toContain(message));
});

describe('nameArg and snapshotArg', () => {
  it('reads VOL@SNAP', () => {
    expect(snapshotArg('data@before-upgrade')).toEqual({ volume: 'data', snapshot: 'before-upgrade' });
  });

  it.each([
    ['data', 'does not name a snapshot: use VOLUME@SNAPSHOT'],
    ['a@b@c', 'does not name a snapshot'],
    ['@snap', 'volume is required'],
    ['vol@', 'snapshot is required'],
    ['v/x@s', 'volume "v/x" is invalid'],
  ])('refuses %j', (text, message) => expect(usageMessage(() => snapshotArg(text))).toContain(message));

  it('checks names with the server rules', () => {
    expect(nameArg('name', 'pg-data.1')).toBe('pg-data.1');
    expect(usageMessage(() => nameArg('name', '-x'))).toContain('name "-x" is invalid');
  });
});

describe('endpointArg', () => {
  it.each(['127.0.0.1:10810', 'weft-0.weft.svc:10810', '[::1]:10810', 'localhost:1'])('accepts %s', (text) => {
    expect(endpointArg(text)).toBe(text);
  });

  it.each(['127.0.0.1', ':10810', '127.0.0.1:0', 'host:65536', 'host:port', '::1:10810'])('refuses %s', (text) => {
    expect(usageMessage(() => endpointArg(text))).toContain('use HOST:PORT');
  });
});
