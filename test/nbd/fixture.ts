// Starts an NbdServer on 127.0.0.1 (a free port) over FileBlockDevices in a temp directory,
// with a logger whose records the tests can inspect, and tears it all down again.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { ExportProvider, NbdExport } from '../../fabric/nbd/export-provider';
import type { BlockDevice } from '../../fabric/volume/block-device';
import { NbdServer, type NbdServerOptions } from '../../fabric/nbd/server';
import { AnsweringDevice, type Answers } from '../helpers/answering-device';
import { FileBlockDevice } from '../helpers/file-block-device';
import { CMD, RawNbdClient } from '../helpers/nbd-raw-client';

const SEED_BYTES = 64 * 1024;

export interface ExportSpec {
  name: string;
  sizeBytes: number;
  readOnly?: boolean;
  description?: string;
  /** Capability answers that differ from the file device's (which claims no multi-conn and no fast zero). */
  answers?: Answers;
  /** Wraps the file device in a test layer (fault injection, delay), like an nbdkit filter. */
  layer?: (device: BlockDevice) => BlockDevice;
  /** Called when a connection closes this export. */
  onClose?: () => void;
}

export interface LogRecord {
  level: number;
  msg: string;
  peer?: string;
  [key: string]: unknown;
}

export const WARN = 40;

/** Serves FileBlockDevices by name and counts opens and closes, so tests can check both match. */
export class FileExports implements ExportProvider {
  opens = 0;
  closes = 0;

  constructor(
    readonly specs: ExportSpec[],
    readonly devices: Map<string, FileBlockDevice>,
  ) {}

  names(): string[] {
    return this.specs.map((spec) => spec.name);
  }

  open(name: string): NbdExport | undefined {
    const spec = this.specs.find((candidate) => candidate.name === name);
    const device = this.devices.get(name);
    if (!spec || !device) return undefined;
    this.opens++;
    let closed = false;
    const answered: BlockDevice = spec.answers ? new AnsweringDevice(device, spec.answers) : device;
    return {
      device: spec.layer ? spec.layer(answered) : answered,
      close: () => {
        if (closed) throw new Error(`export ${name} closed twice`);
        closed = true;
        this.closes++;
        spec.onClose?.();
      },
    };
  }
}

export class NbdFixture {
  private readonly seeds = new Map<string, Buffer>();

  private constructor(
    readonly dir: string,
    readonly server: NbdServer,
    readonly port: number,
    readonly exports: FileExports,
    readonly logs: LogRecord[],
  ) {}

  /** `options` are the server's, but for the export provider and the logger, which the fixture makes. */
  static async start(specs: ExportSpec[], options: Omit<NbdServerOptions, 'provider' | 'logger'> = {}): Promise<NbdFixture> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-nbd-'));
    const devices = new Map<string, FileBlockDevice>();
    try {
      for (const spec of specs) {
        devices.set(spec.name, await FileBlockDevice.create(path.join(dir, `${spec.name}.img`), spec.sizeBytes, spec));
      }
      const logs: LogRecord[] = [];
      const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as LogRecord) });
      const exports = new FileExports(specs, devices);
      const server = new NbdServer({ ...options, provider: exports, logger });
      const port = await server.listen('127.0.0.1', 0);
      return new NbdFixture(dir, server, port, exports, logs);
    } catch (err) {
      for (const device of devices.values()) await device.close();
      await fs.rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  uri(name: string): string {
    return `nbd://127.0.0.1:${this.port}/${name}`;
  }

  device(name: string): FileBlockDevice {
    return this.exports.devices.get(name) as FileBlockDevice;
  }

  /** Path of a scratch file in the fixture's temp directory. */
  file(name: string): string {
    return path.join(this.dir, name);
  }

  /** Writes known random bytes at the start of an export, for expectIntact to check later. */
  async seed(name: string): Promise<void> {
    const data = randomBytes(SEED_BYTES);
    await this.device(name).write(0, data, false);
    this.seeds.set(name, data);
  }

  /** A new connection still works and reads back the seeded bytes unchanged. */
  async expectIntact(name: string): Promise<void> {
    const { client } = await RawNbdClient.open(this.port, name);
    const data = await client.readData(0, SEED_BYTES);
    client.sendRequest({ type: CMD.DISC });
    await client.closed;
    if (!data.equals(this.seeds.get(name) as Buffer)) throw new Error(`export ${name} no longer holds its seeded data`);
  }

  /** Waits until every export opened so far has been closed (connections end asynchronously). */
  async exportsClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.exports.closes !== this.exports.opens || this.server.connectionCount() !== 0) {
      if (Date.now() > deadline) {
        throw new Error(`${this.exports.opens} exports opened, ${this.exports.closes} closed, ${this.server.connectionCount()} connections`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  warnings(): LogRecord[] {
    return this.logs.filter((record) => record.level === WARN);
  }

  async stop(): Promise<void> {
    await this.server.close();
    for (const device of this.exports.devices.values()) await device.close();
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
