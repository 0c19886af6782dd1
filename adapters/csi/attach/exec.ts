// Runs the host tools that attach and mount volumes (losetup, mount, mkfs, nbd-client, ...): argv
// arrays only, never a shell; a failure names the command and carries the tool's own stderr.

import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { WeftError } from '../../../fabric/errors';

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface ToolOptions {
  timeoutMs?: number;
  /** Working directory; default: weftd's. */
  cwd?: string;
}

export interface ToolResult {
  /** null when the tool was killed (by a signal or the timeout). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** A host tool failed: the message says which command, how, and what the tool printed on stderr. */
export class ToolError extends WeftError {
  constructor(readonly command: string, readonly args: readonly string[], readonly result: ToolResult) {
    const how = result.exitCode === null ? 'was killed' : `exited with ${result.exitCode}`;
    const stderr = result.stderr.trim() || result.stdout.trim() || '(no output)';
    super('INTERNAL', `${[command, ...args].join(' ')} ${how}: ${stderr}`);
    this.name = 'ToolError';
  }
}

/** Runs a tool to its end and returns its exit code and output; rejects only if it cannot start. */
export function probeTool(command: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolResult> {
  const execOptions = { timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, cwd: options.cwd, maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' as const };
  return new Promise((resolve, reject) => {
    execFile(command, args, execOptions, (error, stdout, stderr) => {
      if (error && typeof error.code === 'string') {
        reject(new WeftError('FAILED_PRECONDITION', `cannot run ${command}: ${error.message}`));
        return;
      }
      const exitCode = error ? (typeof error.code === 'number' && !error.killed ? error.code : null) : 0;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

/** Runs a tool and resolves with its stdout; rejects with a ToolError unless it exits 0. */
export async function runTool(command: string, args: readonly string[], options: ToolOptions = {}): Promise<string> {
  const result = await probeTool(command, args, options);
  if (result.exitCode !== 0) throw new ToolError(command, args, result);
  return result.stdout;
}

/** The commands of the list that are not on PATH. */
export async function missingCommands(commands: readonly string[]): Promise<string[]> {
  const found = await Promise.all(commands.map(commandExists));
  return commands.filter((_, index) => !found[index]);
}

/** True if an executable of this name is on PATH. */
export async function commandExists(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    try {
      await access(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
