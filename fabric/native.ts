// Loads one of the native modules that `npm run build` compiles into build/Release (see binding.gyp).

import * as fs from 'fs';
import * as path from 'path';

/** The module build/Release/NAME.node; throws with what to do if it has not been built. */
export function loadNativeModule<T>(name: string): T {
  // Compiled code runs from dist/..., sources from the repository: look upwards for build/.
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'build', 'Release', `${name}.node`);
    if (fs.existsSync(candidate)) return require(candidate) as T;
  }
  throw new Error(`the native module ${name} is not built: run \`npm run build\``);
}
