// Runs the `weft` CLI (bin/weft, over the compiled dist/) as a child process, asynchronously so
// that an ApiServer in the test's own process keeps answering, and collects what it printed.

import { execFile } from 'child_process';
import * as path from 'path';

export const WEFT_JS = path.resolve(__dirname, '..', '..', '..', 'bin', 'weft');

export interface WeftRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface WeftRunOptions {
  /** Environment on top of this process's, less any WEFT_ENDPOINT it has. */
  env?: Record<string, string>;
}

export function runWeft(args: string[], options: WeftRunOptions = {}): Promise<WeftRun> {
  const env = { ...process.env, ...options.env };
  if (!options.env?.WEFT_ENDPOINT) delete env.WEFT_ENDPOINT;
  return new Promise((resolve) => {
    execFile(process.execPath, [WEFT_JS, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The lines of a failure's stderr: the CLI promises exactly one, "weft: <reason>". */
export function errorLines(run: WeftRun): string[] {
  return run.stderr.split('\n').filter((line) => line !== '');
}
