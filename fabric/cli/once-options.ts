// Commander keeps the last value of an option given twice (`weft volume create v --size 1GiB --size
// 1TiB` made a 1 TiB volume): here an option of `weft` that takes a value refuses a second one. weftd
// keeps the last (its systemd unit's flags are overridden by WEFTD_ARGS that way).

import { InvalidArgumentError, type Command } from 'commander';

/** Every option of command and of its subcommands that takes one value refuses to be given twice (weft has no repeatable option). */
export function refuseRepeatedOptions(command: Command): void {
  for (const option of command.options) {
    if (!(option.required || option.optional) || option.variadic) continue;
    const parse = option.parseArg;
    let given: string | undefined;
    option.argParser((value: string, previous: unknown) => {
      if (given !== undefined) throw new InvalidArgumentError(`${option.long} was given already (${given}): give it once`);
      given = value;
      return parse ? parse(value, previous) : value;
    });
  }
  for (const subcommand of command.commands) refuseRepeatedOptions(subcommand);
}
