// Entry point of `weft` (bin/weft requires the compiled file): runs the command line on this
// process's arguments and leaves its exit code for Node to exit with once output is flushed.

import { runCli } from './program';

void runCli(process.argv).then((code) => {
  process.exitCode = code;
});
