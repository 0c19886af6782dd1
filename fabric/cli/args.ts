// Parsing of the CLI's arguments and options (names, sizes, VOL@SNAP, the endpoint) with the
// same rules the server applies, so that bad input is a usage error before any call is made.

import { checkName, checkSize } from '../api/validate';
import type { SnapshotRef } from '../api/messages';
import { parseSize } from '../units';
import { CSI_CLONE_SNAPSHOT } from '../volume/names';
import { asUsage, usageError } from './errors';

export function nameArg(field: string, text: string): string {
  return asUsage(() => checkName(field, text));
}

/** A new snapshot's name: also not one of the CSI driver's hidden clone snapshots, which it deletes with their volume. */
export function newSnapshotArg(text: string): string {
  const name = nameArg('snapshot', text);
  if (CSI_CLONE_SNAPSHOT.test(name)) throw usageError(`snapshot name "${name}" has the form the CSI driver gives its hidden clone snapshots (csi-clone. and 16 hex digits), which it deletes with their volume: choose another`);
  return name;
}

/** "10G", "512MiB", "1TiB" -> bytes; zero and garbage are usage errors. */
export function sizeArg(option: string, text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (error) {
    throw usageError(`${option}: ${(error as Error).message}`);
  }
  return asUsage(() => checkSize(option, bytes));
}

/** "VOLUME@SNAPSHOT" -> its two names. */
export function snapshotArg(text: string): SnapshotRef {
  const parts = text.split('@');
  if (parts.length !== 2) throw usageError(`"${text}" does not name a snapshot: use VOLUME@SNAPSHOT`);
  return { volume: nameArg('volume', parts[0]), snapshot: nameArg('snapshot', parts[1]) };
}

/** A volume name, or VOL@SNAP. */
export function exportArg(text: string): string {
  if (!text.includes('@')) return nameArg('name', text);
  const { volume, snapshot } = snapshotArg(text);
  return `${volume}@${snapshot}`;
}

/** "HOST:PORT" or "[IPv6]:PORT", returned as given. */
export function endpointArg(text: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(text);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw usageError(`--endpoint "${text}" is invalid: use HOST:PORT, e.g. 127.0.0.1:10810`);
  }
  return text;
}

/** --timeout: "30s", "5m", "1h", "1.5" (seconds) -> milliseconds, from 1 s to a day. */
export function timeoutArg(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = match ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's']! : NaN;
  if (!(ms >= 1000 && ms <= 86_400_000)) throw usageError(`--timeout "${text}" is invalid: use a duration such as 30s, 5m or 1h, from 1s to 24h`);
  return ms;
}
