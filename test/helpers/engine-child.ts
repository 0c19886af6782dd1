// A storage engine in a child process, driven one command at a time, so that a test can crash it
// for real (SIGKILL keeps what reached the page cache, as kill -9 of weftd does) at a moment it
// chose, with the metadata disk failing (metadata-faults.ts) if it likes.
// Usage: engine-child OPTIONS_JSON (EngineOptions less the logger). Reads one JSON command per line
// on stdin and answers each with one JSON line on stdout: {"ok":true,"result":...} or
// {"ok":false,"error":"...","kind":"..."}.

import * as readline from 'readline';
import pino from 'pino';
import { WeftError, IoError } from '../../fabric/errors';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { OpenDevice } from '../../fabric/volume/types';
import { FaultyFileOps, isMetadataFile, isPoolFile } from './faulty-fs';
import { Prng } from './prng';
import { openExport } from './open-devices';

/** Faults of the metadata disk or the pool's: which calls fail, and how. */
export interface Faults {
  code: 'ENOSPC' | 'EIO';
  calls: ('write' | 'sync')[];
  files: 'metadata' | 'pool';
  /** Only the next write of more than one block fails (EIO), after landing its first block. */
  tornOnce?: boolean;
}

export type EngineCommand =
  | { op: 'createVolume'; name: string; sizeBytes: number }
  | { op: 'deleteVolume'; name: string }
  | { op: 'resize'; name: string; sizeBytes: number }
  | { op: 'snapshot'; volume: string; name: string }
  | { op: 'deleteSnapshot'; volume: string; name: string }
  | { op: 'clone'; volume: string; snapshot: string; name: string }
  /** Writes length bytes of value byte at offset (with FUA if fua). */
  | { op: 'write'; volume: string; offset: number; length: number; byte: number; fua?: boolean }
  | { op: 'trim'; volume: string; offset: number; length: number }
  | { op: 'flush' }
  /** Several flushes at once (group commit): the result lists each one's outcome. */
  | { op: 'flushes'; count: number }
  | { op: 'faults'; faults?: Faults }
  | { op: 'list' }
  /** creates volumes v0..v(n-1) and one snapshot of each (the control-plane load of issue 7). */
  | { op: 'churn'; volumes: number; snapshots: boolean };

async function main(): Promise<void> {
  const faulty = new FaultyFileOps(new Prng(1)).install();
  const setFaults = (faults: Faults | undefined) => {
    faulty.heal();
    if (!faults) return;
    faulty.affects = faults.files === 'pool' ? isPoolFile : isMetadataFile;
    faulty.calls = new Set(faults.calls);
    if (faults.tornOnce) faulty.tearNext = 1;
    else if (faults.code === 'ENOSPC') faulty.diskFull = true;
    else faulty.failureRate = 1;
  };
  const engine = await LocalEngine.open({ ...JSON.parse(process.argv[2]), logger: pino({ level: 'silent' }) });
  const run = async (command: EngineCommand): Promise<unknown> => {
    switch (command.op) {
      case 'createVolume':
        return engine.createVolume({ name: command.name, sizeBytes: command.sizeBytes });
      case 'deleteVolume':
        return engine.deleteVolume(command.name);
      case 'resize':
        return engine.resizeVolume(command.name, command.sizeBytes);
      case 'snapshot':
        return engine.createSnapshot(command.volume, command.name);
      case 'deleteSnapshot':
        return engine.deleteSnapshot(command.volume, command.name);
      case 'clone':
        return engine.cloneVolume({ name: command.name, volume: command.volume, snapshot: command.snapshot });
      case 'write':
      case 'trim':
        return withDevice(engine, command.volume, (device) =>
          command.op === 'write'
            ? device.write(command.offset, Buffer.alloc(command.length, command.byte), command.fua ?? false)
            : device.trim(command.offset, command.length, false),
        );
      case 'flush':
        return engine.store.flush();
      case 'flushes': {
        const outcomes = await Promise.allSettled(Array.from({ length: command.count }, () => engine.store.flush()));
        return outcomes.map((o) => o.status);
      }
      case 'faults':
        return setFaults(command.faults);
      case 'list':
        return { volumes: engine.listVolumes().map((v) => [v.name, v.sizeBytes]), snapshots: engine.listSnapshots().map((s) => `${s.volume}@${s.name}`) };
      case 'churn':
        for (let i = 0; i < command.volumes; i++) {
          await engine.createVolume({ name: `v${i}`, sizeBytes: 1024 * 1024 });
          if (command.snapshots) await engine.createSnapshot(`v${i}`, 's');
        }
        return undefined;
    }
  };
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    try {
      const result = await run(JSON.parse(line) as EngineCommand);
      process.stdout.write(JSON.stringify({ ok: true, result: result ?? null }) + '\n');
    } catch (err) {
      const kind = err instanceof WeftError ? err.kind : err instanceof IoError ? err.errno : (err as NodeJS.ErrnoException).code;
      process.stdout.write(JSON.stringify({ ok: false, error: (err as Error).message, kind }) + '\n');
    }
  }
}

async function withDevice<T>(engine: LocalEngine, volume: string, io: (device: OpenDevice) => Promise<T>): Promise<T> {
  const device = openExport(engine, volume);
  try {
    return await io(device);
  } finally {
    device.close();
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`engine-child: ${(err as Error).stack}\n`);
    process.exit(3);
  });
}
