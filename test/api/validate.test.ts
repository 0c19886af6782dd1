// Unit tests of the request checks shared by the API server and the CLI: names (volume,
// snapshot, class) and sizes, and that each failure names its field.

import { WeftError } from '../../fabric/errors';
import { checkName, checkOptionalName, checkOptionalSize, checkSize } from '../../fabric/api/validate';

function failure(check: () => unknown): WeftError {
  try {
    check();
  } catch (error) {
    if (error instanceof WeftError) return error;
    throw error;
  }
  throw new Error('expected the check to fail');
}

describe('checkName', () => {
  it.each(['a', 'data', 'A1', '0volume', 'pg-data_01.v2', 'x'.repeat(63)])('accepts %s', (name) => {
    expect(checkName('name', name)).toBe(name);
  });

  it.each([
    ['', 'name is required'],
    ['-data', 'is invalid'],
    ['.hidden', 'is invalid'],
    ['_x', 'is invalid'],
    ['vol@snap', 'is invalid'],
    ['a/b', 'is invalid'],
    ['with space', 'is invalid'],
    ['ünicode', 'is invalid'],
    ['x'.repeat(64), 'is invalid'],
  ])('refuses %j with INVALID_ARGUMENT', (name, message) => {
    const error = failure(() => checkName('name', name));
    expect(error.kind).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(message);
    expect(error.message).toMatch(/^name /);
  });

  it('names the field it checks', () => {
    expect(failure(() => checkName('source_snapshot.volume', '')).message).toBe('source_snapshot.volume is required');
    expect(failure(() => checkName('snapshot', 'a@b')).message).toMatch(/^snapshot "a@b" is invalid/);
  });

  it('treats an empty optional name as absent', () => {
    expect(checkOptionalName('volume', '')).toBeUndefined();
    expect(checkOptionalName('volume', 'data')).toBe('data');
    expect(failure(() => checkOptionalName('volume', 'a/b')).kind).toBe('INVALID_ARGUMENT');
  });
});

describe('checkSize', () => {
  it('accepts whole byte counts', () => {
    expect(checkSize('size_bytes', 1)).toBe(1);
    expect(checkSize('size_bytes', 2 ** 40)).toBe(2 ** 40);
  });

  it.each([0, -1, 1.5, 2 ** 64, NaN])('refuses %p, naming the field', (bytes) => {
    const error = failure(() => checkSize('size_bytes', bytes));
    expect(error.kind).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/^size_bytes /);
  });

  it('treats 0 as "not given" when the size is optional', () => {
    expect(checkOptionalSize('size_bytes', 0)).toBeUndefined();
    expect(checkOptionalSize('size_bytes', 4096)).toBe(4096);
    expect(failure(() => checkOptionalSize('size_bytes', 2 ** 60)).message).toContain('below 2^53');
  });
});
