// Unit tests of the progress bar that `weft volume verify` draws on a terminal.

import { ProgressBar, progressLine } from '../../fabric/cli/progress';

class TerminalRecorder {
  readonly writes: string[] = [];
  readonly isTTY = true;
  constructor(readonly columns: number) {}
  write(text: string): void {
    this.writes.push(text);
  }
}

describe('progressLine', () => {
  it('fills the bar in proportion and shows percent and counts', () => {
    expect(progressLine('verifying data', 370, 1000)).toBe(`verifying data [${'#'.repeat(11)}${'.'.repeat(19)}]  37%  370/1000 blocks`);
    expect(progressLine('v', 1000, 1000)).toContain(`[${'#'.repeat(30)}] 100%`);
    expect(progressLine('v', 0, 0)).toContain('100%  0/0 blocks');
  });
});

describe('ProgressBar', () => {
  it('redraws in place, skips unchanged lines, fits the terminal and clears itself', () => {
    const terminal = new TerminalRecorder(40);
    const bar = new ProgressBar(terminal, 'verifying data');
    bar.update(1, 10);
    bar.update(1, 10);
    bar.update(10, 10);
    bar.clear();
    expect(terminal.writes).toHaveLength(3);
    expect(terminal.writes[0].startsWith('\rverifying data [###')).toBe(true);
    expect(terminal.writes.slice(0, 2).every((text) => text.length <= 40)).toBe(true);
    expect(terminal.writes[2]).toBe('\r\x1b[K');
  });

  it('assumes 80 columns when the terminal does not say', () => {
    const terminal = new TerminalRecorder(0);
    new ProgressBar(terminal, 'verifying a-volume-with-a-rather-long-name').update(5, 10);
    expect(terminal.writes[0]).toHaveLength(80);
  });

  it('writes nothing on clear when it never drew', () => {
    const terminal = new TerminalRecorder(80);
    new ProgressBar(terminal, 'x').clear();
    expect(terminal.writes).toEqual([]);
  });
});
