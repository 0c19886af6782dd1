// Calls that must not overlap for one key (a volume's name), while calls for other keys run freely.

export class KeyedTurns {
  /** Per key, the end of the last call queued. */
  private readonly turns = new Map<string, Promise<void>>();

  /** Runs fn once every earlier call for the same key has ended (however it ended). */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.turns.get(key) ?? Promise.resolve()).then(fn);
    const turn = run.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(key, turn);
    void turn.then(() => this.turns.get(key) === turn && this.turns.delete(key));
    return run;
  }
}
