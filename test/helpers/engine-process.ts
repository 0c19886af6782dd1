// The parent's side of engine-child.ts: starts the child, sends it commands, crashes it.

import * as path from 'path';
import * as readline from 'readline';
import { ChildProcess, spawn } from 'child_process';
import type { EngineOptions } from '../../fabric/volume/local-engine';
import type { EngineCommand } from './engine-child';

export interface EngineReply {
  ok: boolean;
  result?: unknown;
  error?: string;
  kind?: string;
}

const CHILD = path.join(__dirname, 'engine-child.js');

export class EngineProcess {
  private readonly child: ChildProcess;
  private readonly waiting: { command: string; resolve: (reply: EngineReply) => void; reject: (err: Error) => void }[] = [];
  private readonly exited: Promise<void>;
  private stderr = '';

  constructor(options: Omit<EngineOptions, 'logger'>) {
    this.child = spawn(process.execPath, [CHILD, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => this.waiting.shift()?.resolve(JSON.parse(line) as EngineReply));
    this.exited = new Promise((resolve) =>
      this.child.once('close', () => {
        for (const w of this.waiting.splice(0)) w.reject(new Error(`engine child ended during ${w.command}: ${this.stderr}`));
        resolve();
      }),
    );
  }

  /** Runs one command in the child and returns its reply (a refusal or failure is a reply too). */
  send(command: EngineCommand): Promise<EngineReply> {
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null) return reject(new Error(`engine child exited ${this.child.exitCode}: ${this.stderr}`));
      this.waiting.push({ command: command.op, resolve, reject });
      this.child.stdin!.write(JSON.stringify(command) + '\n');
    });
  }

  /** Like send, but the command must succeed. */
  async ok(command: EngineCommand): Promise<unknown> {
    const reply = await this.send(command);
    if (!reply.ok) throw new Error(`${command.op} failed: ${reply.error}`);
    return reply.result;
  }

  /** kill -9, as a crash: what reached the page cache stays. */
  async crash(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
