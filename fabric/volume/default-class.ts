// Which pool a volume goes to when its request names no class, one rule for the engine and for
// whoever needs to predict its choice (CSI's capacity and topology answers).

/** The class "default" if such a pool exists, else the only class there is (named once per node, or not); undefined when neither. */
export function defaultClass(classes: readonly string[]): string | undefined {
  const distinct = new Set(classes);
  if (distinct.has('default')) return 'default';
  return distinct.size === 1 ? classes[0] : undefined;
}
