// The highest value a gauge (a process's RSS, a server's bytes in flight) reaches while some work runs.

/** Samples `gauge` every `intervalMs` while `work` runs, and once before and after; resolves with the peak. */
export async function peakDuring(gauge: () => number, intervalMs: number, work: Promise<unknown>): Promise<number> {
  let peak = gauge();
  const timer = setInterval(() => (peak = Math.max(peak, gauge())), intervalMs);
  try {
    await work;
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, gauge());
}
