// A weftd serving CSI on ROOT/csi.sock, for test files that stage and publish volumes through the
// socket; and the hooks that fail a test leaving mounts, loop devices or helpers behind.

import path from 'node:path';
import { CsiClient } from './csi-client';
import { failOnLeftoversAfterEach, forceCleanup } from './mounts';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle, type WeftdOptions } from './weftd';

export interface CsiWeftd {
  weftd: WeftdHandle;
  csi: CsiClient;
  /** Staging and target paths go under it, as a CO would make them. */
  root: string;
  /** weftd's temp dir: its data dir holds the attachments' work dirs (FUSE mounts, helpers). */
  weftdDir: string;
}

/** options.extraArgs come after --csi-endpoint. */
export async function startCsiWeftd(rootPrefix: string, options: WeftdOptions = {}): Promise<CsiWeftd> {
  const root = makeTempDir(rootPrefix);
  const socket = path.join(root, 'csi.sock');
  const weftd = await startWeftd({ ...options, extraArgs: ['--csi-endpoint', `unix://${socket}`, ...(options.extraArgs ?? [])] });
  return { weftd, csi: new CsiClient(socket), root, weftdDir: path.dirname(weftd.dataDir) };
}

/** Registers the file's hooks: leftovers fail each test; after all, the client closes and everything goes. */
export function cleanUpAfterTests(started: () => CsiWeftd | undefined): void {
  const dirs = () => [started()?.root, started()?.weftdDir].filter((dir): dir is string => dir !== undefined);
  failOnLeftoversAfterEach(dirs);
  afterAll(async () => {
    started()?.csi.close();
    for (const dir of dirs()) await forceCleanup(dir);
    await cleanupAll();
  });
}
