// KernelNbdAttacher cannot run on machines without the nbd kernel module (these ones): only the
// arguments it gives nbd-client and its relay are checked here, against nbd-client's manual page.

import { nbdClientConnectArgs } from '../../adapters/csi/attach/kernel-nbd';
import { RECONNECT_WINDOW_S, relayDaemonArgs } from '../../adapters/csi/attach/relay';

describe('kernel NBD attach: argument building only (no nbd module here)', () => {
  test('nbd-client connects the device to the relay socket, naming the export, block size and timeout', () => {
    const args = nbdClientConnectArgs({ socket: 'relay.sock', device: '/dev/nbd3', exportName: 'pvc-1', blockSizeBytes: 4096, timeoutS: 120 });
    expect(args).toEqual(['-unix', 'relay.sock', '/dev/nbd3', '-N', 'pvc-1', '-b', '4096', '-t', '120']);
  });

  test('its relay daemonizes, on a socket relative to the work dir, and retries once a second for the window', () => {
    const args = relayDaemonArgs('/var/lib/weft/csi/attach/pvc-1', 'nbd://127.0.0.1:10809/pvc-1');
    expect(args).toEqual([
      '--unix', 'relay.sock', '--pidfile', '/var/lib/weft/csi/attach/pvc-1/relay.pid',
      '--filter=retry', 'nbd', 'uri=nbd://127.0.0.1:10809/pvc-1',
      `retries=${RECONNECT_WINDOW_S}`, 'retry-delay=1', 'retry-exponential=no',
    ]);
    expect(args).not.toContain('--foreground'); // in the foreground, nbdkit dies with its parent (weftd)
  });
});
