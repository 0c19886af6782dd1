// What deploy/Dockerfile promises the deployments: the image tag it is built as (its "docker build"
// line) and the absolute path of weftd in it (the command its ENTRYPOINT runs under tini).

import fs from 'node:fs';
import path from 'node:path';

export const DEPLOY_DIR = path.resolve(__dirname, '..', '..', '..', 'deploy');

export interface ImageFacts {
  tag: string;
  weftdPath: string;
  /** What runs as PID 1: the ENTRYPOINT's first word. */
  init: string;
}

export function dockerfileFacts(): ImageFacts {
  const text = fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8');
  const tag = /docker build -f deploy\/Dockerfile -t (\S+) \./.exec(text)?.[1];
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(text)?.[1];
  if (!tag || !entrypoint) throw new Error('deploy/Dockerfile has no "docker build ... -t TAG ." line or no ENTRYPOINT [...]');
  // The command after tini's "--": tini runs it as its child.
  const words = JSON.parse(entrypoint) as string[];
  return { tag, weftdPath: words[words.length - 1], init: words[0] };
}
