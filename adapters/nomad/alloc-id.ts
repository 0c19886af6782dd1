// The Nomad allocation a volume is published for, read from the target path Nomad gives
// NodePublishVolume: <stage_publish_base_dir>/per-alloc/<alloc id>/<volume id>/<usage>.

/** Nomad's csimanager puts per-allocation targets under this directory name. */
export const PER_ALLOC_DIR = 'per-alloc';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The allocation id (lower case) in a Nomad target path, or undefined when the path is not one. */
export function allocationIdFromTargetPath(targetPath: string): string | undefined {
  const segments = targetPath.split('/').filter((segment) => segment !== '');
  const at = segments.lastIndexOf(PER_ALLOC_DIR);
  // The alloc id must be followed by at least the volume id: per-alloc/<alloc>/<volume>/...
  if (at < 0 || at + 2 >= segments.length) return undefined;
  const allocationId = segments[at + 1];
  return UUID.test(allocationId) ? allocationId.toLowerCase() : undefined;
}
