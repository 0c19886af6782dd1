// The one wrapper every command's action goes through: it reads the global options, connects a
// WeftClient, runs the handler, prints its outcome as a table or JSON (unless the handler printed
// as it went), and closes the client.

import type { Command } from 'commander';
import { WeftClient } from '../api/client';
import { endpointArg, timeoutArg } from './args';
import { operationFailed } from './errors';
import { json, type OutputFormat } from './output';
import type { TerminalStream } from './progress';

export interface GlobalOptions {
  endpoint: string;
  output: OutputFormat;
  timeout: string;
}

export interface CommandContext {
  client: WeftClient;
  output: OutputFormat;
  /** Where a command that prints as it goes (a live view) writes its lines. */
  stdout: TerminalStream;
  /** Where progress goes (never the result). */
  stderr: TerminalStream;
}

export interface Outcome {
  /** What --output json prints. */
  json: unknown;
  /** What --output table prints. */
  text: string;
  /** Set when the operation ran but its result is a failure (verify found bad blocks): exit 1. */
  failure?: string;
}

export type Handler<Args extends (string | undefined)[], Options> = (
  context: CommandContext,
  args: Args,
  options: Options,
) => Promise<Outcome | Streamed>;

/** What a handler returns when it has written its output to context.stdout itself, as it went. */
export const STREAMED = 'streamed';
export type Streamed = typeof STREAMED;

/** Commander calls an action with the arguments, the options, and last the command itself. */
export function action<Args extends (string | undefined)[], Options>(handler: Handler<Args, Options>) {
  return async (...commanderArgs: unknown[]): Promise<void> => {
    const command = commanderArgs[commanderArgs.length - 1] as Command;
    const globals = command.optsWithGlobals<GlobalOptions>();
    const client = new WeftClient(endpointArg(globals.endpoint), timeoutArg(globals.timeout));
    try {
      const context = { client, output: globals.output, stdout: process.stdout, stderr: process.stderr };
      const outcome = await handler(context, command.processedArgs as Args, command.opts<Options & object>());
      if (outcome === STREAMED) return;
      process.stdout.write(`${globals.output === 'json' ? json(outcome.json) : outcome.text}\n`);
      if (outcome.failure) throw operationFailed(outcome.failure);
    } finally {
      client.close();
    }
  };
}
