// Unit tests of how WeftClient tells "weftd could not be reached" from an error weftd returned,
// and an end-to-end check against a port where nothing listens.

import { status } from '@grpc/grpc-js';
import { unreachableReason, WeftApiError, WeftClient } from '../../fabric/api/client';
import { freePort } from '../helpers/free-port';

describe('unreachableReason', () => {
  it.each([
    ['No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ', 'connection refused'],
    ['Name resolution failed for target dns:nosuchhost.invalid:10810', 'unknown host'],
    ['No connection established. Last error: Error: connect EHOSTUNREACH 10.0.0.9:10810', 'host unreachable'],
    ['No connection established. Last error: Error: connect EWEIRD 10.0.0.9:10810', 'EWEIRD'],
    ['No connection established. Last error: null', 'no connection'],
    ['Connection dropped', 'connection dropped'],
  ])('reads %j as %j', (details, reason) => {
    expect(unreachableReason({ code: status.UNAVAILABLE, details })).toBe(reason);
  });

  it('leaves errors from weftd itself alone', () => {
    expect(unreachableReason({ code: status.UNAVAILABLE, details: 'weftd is shutting down' })).toBeUndefined();
    expect(unreachableReason({ code: status.NOT_FOUND, details: 'ECONNREFUSED in a volume name?' })).toBeUndefined();
  });
});

describe('WeftClient against a closed port', () => {
  it('fails with UNAVAILABLE and "cannot reach weftd at HOST:PORT (connection refused)"', async () => {
    const endpoint = `127.0.0.1:${await freePort()}`;
    const client = new WeftClient(endpoint);
    try {
      const error = await client.listVolumes().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WeftApiError);
      expect(error).toMatchObject({ code: status.UNAVAILABLE, message: `cannot reach weftd at ${endpoint} (connection refused)` });
    } finally {
      client.close();
    }
  });
});
