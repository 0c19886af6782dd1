// Failures the CLI reports as "weft: <reason>" on one line, with the exit code they call for:
// 2 for a usage error (found before anything was asked of weftd), 1 for a failed operation.

import { WeftError } from '../errors';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string) => new CliError(EXIT_USAGE, message);
export const operationFailed = (message: string) => new CliError(EXIT_FAILED, message);

/** Runs a local check (fabric/api/validate); its INVALID_ARGUMENT becomes a usage error. */
export function asUsage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof WeftError) throw usageError(error.message);
    throw error;
  }
}
