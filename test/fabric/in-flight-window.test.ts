import { InFlightWindow } from '../../fabric/in-flight-window';

/** Whether p has settled by the time the microtasks queued so far have run. */
async function settled(p: Promise<void>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('InFlightWindow', () => {
  it('gives the lowest number still running, whatever order they end in', () => {
    const w = new InFlightWindow();
    expect(w.lowest).toBeUndefined();
    for (const seq of [3, 7, 8, 20]) w.start(seq);
    expect(w.lowest).toBe(3);
    w.end(7);
    expect(w.lowest).toBe(3);
    w.end(3);
    expect(w.lowest).toBe(8); // 7 ended already
    expect(w.size).toBe(2);
    w.end(20);
    w.end(8);
    expect(w.lowest).toBeUndefined();
    expect(w.size).toBe(0);
  });

  it('puts a number started out of order in its place, and ignores the end of one not in flight', () => {
    const w = new InFlightWindow();
    w.start(5);
    w.start(9);
    w.start(7); // out of order
    w.start(2); // below all
    expect(w.lowest).toBe(2);
    w.end(6); // never started
    w.end(2);
    w.end(2); // twice
    expect(w.lowest).toBe(5);
    expect(w.size).toBe(3);
    w.end(5);
    expect(w.lowest).toBe(7);
    w.start(10); // in order again
    w.end(7);
    w.end(9);
    expect(w.lowest).toBe(10);
    expect(w.size).toBe(1);
  });

  it('stays small behind an operation that does not end while thousands of others come and go', () => {
    const w = new InFlightWindow();
    w.start(1); // hangs
    for (let seq = 2; seq < 20_000; seq += 2) {
      w.start(seq);
      w.start(seq + 1);
      w.end(seq);
      w.end(seq + 1);
    }
    expect(w.lowest).toBe(1);
    expect(w.size).toBe(1);
    expect(w.room).toBeLessThanOrEqual(64);
    w.end(1);
    expect(w.lowest).toBeUndefined();
  });

  it('keeps its entries in order as it grows past its first size, with ends out of order', () => {
    const w = new InFlightWindow();
    const running = new Set<number>();
    let next = 1;
    // A seeded mix of starts and ends, up to 300 in flight (the ring starts at 64).
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let step = 0; step < 20000; step++) {
      if (running.size < 300 && (running.size === 0 || random() < 0.52)) {
        w.start(next);
        running.add(next);
        next += 1 + Math.floor(random() * 3);
      } else {
        const all = [...running];
        const seq = all[Math.floor(random() * all.length)];
        w.end(seq);
        running.delete(seq);
      }
      expect(w.size).toBe(running.size);
      expect(w.lowest).toBe(running.size === 0 ? undefined : Math.min(...running));
    }
  });

  it('endedUpTo waits for those started up to the number, not for later ones', async () => {
    const w = new InFlightWindow();
    await expect(settled(w.endedUpTo(10))).resolves.toBe(true); // nothing running
    w.start(1);
    w.start(2);
    const upTo2 = w.endedUpTo(2);
    const upTo1 = w.endedUpTo(1);
    w.start(3);
    w.end(2);
    expect(await settled(upTo2)).toBe(false);
    expect(await settled(upTo1)).toBe(false);
    w.end(1);
    expect(await settled(upTo1)).toBe(true);
    expect(await settled(upTo2)).toBe(true); // 3 still runs
    const upTo3 = w.endedUpTo(3);
    w.start(4);
    expect(await settled(upTo3)).toBe(false);
    w.end(3);
    expect(await settled(upTo3)).toBe(true);
    expect(w.lowest).toBe(4);
  });
});
