// The `weft` command tree (global options, then volume, snapshot, pool and node commands, then the
// groups plugged in by bin/weft) and runCli(), which runs it and turns every failure into one
// "weft: <reason>" line and an exit code.

import { Command, CommanderError, Option, type HelpContext } from 'commander';
import { refuseRepeatedOptions } from './once-options';
import { CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, usageError } from './errors';
import { nodeCommands } from './node-commands';
import { attachmentCommands } from './attachment-commands';
import { classCommands } from './class-commands';
import { poolCommands } from './pool-commands';
import { snapshotCommands } from './snapshot-commands';
import { volumeCommands } from './volume-commands';

export const DEFAULT_ENDPOINT = '127.0.0.1:10810';
/** Long enough for any control operation weftd runs (they have deadlines of their own, of seconds). */
export const DEFAULT_TIMEOUT = '5m';

const EXAMPLES = `
Examples:
  weft volume create data --size 10GiB
  weft snapshot create data before-upgrade
  weft volume create data-copy --from-snapshot data@before-upgrade
  weft volume list --output json
  WEFT_ENDPOINT=10.0.0.5:10810 weft node info`;

/** Commander's commands, except that a group run without a subcommand is a one-line usage error. */
class WeftCommand extends Command {
  override createCommand(name?: string): Command {
    return new WeftCommand(name);
  }

  override help(context?: HelpContext | ((text: string) => string)): never {
    if (typeof context !== 'object' || !context.error) return super.help(context as HelpContext);
    const path = commandPath(this);
    const names = this.commands.map((command) => command.name()).join(', ');
    throw usageError(`missing command: ${path} takes one of ${names} (see: ${path} --help)`);
  }
}

/** Adds one group of subcommands (e.g. `weft nomad ...`) to the program. */
export type CommandGroup = (program: Command) => void;

export function buildProgram(plugins: readonly CommandGroup[] = []): Command {
  const program = new WeftCommand('weft')
    .description('Weft command line: volumes, snapshots, clones, pools and nodes of a Weft storage fabric')
    .addOption(
      new Option('--endpoint <host:port>', "weftd's control API").env('WEFT_ENDPOINT').default(DEFAULT_ENDPOINT),
    )
    .addOption(new Option('--output <format>', 'table for people, json for scripts').choices(['table', 'json']).default('table'))
    .addOption(
      new Option('--timeout <duration>', 'how long a call may wait for weftd to answer (a stuck or unreachable node), a verify how long it may go without progress: 30s, 5m, 1h').env('WEFT_TIMEOUT').default(DEFAULT_TIMEOUT),
    )
    .addHelpText('after', EXAMPLES)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`weft: ${oneLine(text.replace(/^error: /, ''))}\n`) });
  volumeCommands(program);
  snapshotCommands(program);
  poolCommands(program);
  classCommands(program);
  attachmentCommands(program);
  nodeCommands(program);
  for (const addGroup of plugins) addGroup(program);
  refuseRepeatedOptions(program);
  return program;
}

/** Runs `weft` on process-style argv; resolves with the exit code (0 ok, 1 failed, 2 usage). */
export async function runCli(argv: string[], plugins: readonly CommandGroup[] = []): Promise<number> {
  try {
    await buildProgram(plugins).parseAsync(argv);
    return EXIT_OK;
  } catch (error) {
    return reportFailure(error);
  }
}

function reportFailure(error: unknown): number {
  // Commander has printed its own errors (through outputError) and help already.
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  process.stderr.write(`weft: ${oneLine(error instanceof Error ? error.message : String(error))}\n`);
  return error instanceof CliError ? error.exitCode : EXIT_FAILED;
}

function commandPath(command: Command): string {
  return command.parent ? `${commandPath(command.parent)} ${command.name()}` : command.name();
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' ');
}
