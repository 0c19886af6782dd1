// Unit tests of the error mapping: each WeftError kind to its gRPC code with its message, and
// anything else to INTERNAL, logged at error level.

import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Writable } from 'stream';
import { WeftError, type ErrorKind } from '../../fabric/errors';
import { statusOf, toServiceError } from '../../fabric/api/status';

function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

describe('statusOf', () => {
  it.each<[ErrorKind, status]>([
    ['NOT_FOUND', status.NOT_FOUND],
    ['ALREADY_EXISTS', status.ALREADY_EXISTS],
    ['INVALID_ARGUMENT', status.INVALID_ARGUMENT],
    ['RESOURCE_EXHAUSTED', status.RESOURCE_EXHAUSTED],
    ['FAILED_PRECONDITION', status.FAILED_PRECONDITION],
    ['UNAVAILABLE', status.UNAVAILABLE],
    ['INTERNAL', status.INTERNAL],
  ])('maps %s to the gRPC code of that name, keeping the message', (kind, code) => {
    expect(statusOf(new WeftError(kind, `it was ${kind}`))).toEqual({ code, details: `it was ${kind}` });
  });

  it('maps any other error to INTERNAL with its message', () => {
    expect(statusOf(new TypeError('x is undefined'))).toEqual({ code: status.INTERNAL, details: 'x is undefined' });
    expect(statusOf('a string')).toEqual({ code: status.INTERNAL, details: 'a string' });
  });
});

describe('toServiceError', () => {
  it('logs INTERNAL errors at error level with the method', () => {
    const { logger, lines } = capturingLogger();
    const error = toServiceError(new Error('disk on fire'), '/weft.v1.VolumeService/CreateVolume', logger);
    expect(error).toEqual({ code: status.INTERNAL, details: 'disk on fire' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, method: '/weft.v1.VolumeService/CreateVolume' });
  });

  it('does not log expected refusals above debug', () => {
    const { logger, lines } = capturingLogger();
    toServiceError(new WeftError('NOT_FOUND', 'volume x does not exist'), '/weft.v1.VolumeService/GetVolume', logger);
    expect(lines.every((line) => (line.level as number) <= 20)).toBe(true);
  });
});
