// Helpers for the deployment tests: a weftd command line from a manifest, its flag values, and
// whether weftd's own parser (fabric/config.ts) accepts it.

import { ConfigError, parseConfig, type WeftdConfig } from '../../fabric/config';

/** Parses a weftd argv as weftd would; a ConfigError becomes an error that names the arguments. */
export function parseWeftdArgs(args: string[]): WeftdConfig {
  try {
    return parseConfig(args);
  } catch (error) {
    if (error instanceof ConfigError) throw new Error(`weftd rejects ${JSON.stringify(args)}: ${error.message}`);
    throw error;
  }
}

/** The value of "--flag value" or "--flag=value"; undefined if the flag is not there. */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
  }
  return undefined;
}

/** "unix:///csi/csi.sock" -> "/csi/csi.sock"; anything else is not a unix socket endpoint. */
export function socketPath(endpoint: string | undefined): string {
  const match = /^unix:\/\/(\/.+)$/.exec(endpoint ?? '');
  if (!match) throw new Error(`${JSON.stringify(endpoint)} is not a unix:///path endpoint`);
  return match[1];
}
