// Which pool a volume goes to when its request names no class, one rule for the engine and for
// whoever needs to predict its choice (CSI's capacity and topology answers).

/** The class "default" if such a pool exists, else the only pool's class; undefined when neither. */
export function defaultClass(classes: readonly string[]): string | undefined {
  if (classes.includes('default')) return 'default';
  return classes.length === 1 ? classes[0] : undefined;
}
