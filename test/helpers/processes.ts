import fs from 'node:fs';

/**
 * The arguments of a live process, or undefined once it has ended (a zombie, or gone). /proc is read
 * while the process may end, so a file that vanishes between two reads means it has ended.
 */
export function liveCommandLine(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.charAt(stat.lastIndexOf(')') + 2) === 'Z') return undefined;
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return undefined;
  }
}
