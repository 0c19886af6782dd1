// Loads one of the native modules that `npm run build` compiles into build/Release (see binding.gyp).

import * as path from 'path';
import { findAbove } from './source-files';

/** The module build/Release/NAME.node; throws with what to do if it has not been built. */
export function loadNativeModule<T>(name: string): T {
  let file: string;
  try {
    file = findAbove(path.join('build', 'Release', `${name}.node`));
  } catch {
    throw new Error(`the native module ${name} is not built: run \`npm run build\``);
  }
  return require(file) as T;
}
