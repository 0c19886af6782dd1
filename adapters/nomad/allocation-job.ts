// The job and task group of a Nomad allocation, asked of Nomad's HTTP API when the CSI node service
// publishes a volume for it (weftd --nomad-addr), for the job label of per-workload telemetry.

import type { Logger } from 'pino';
import { NomadClient } from './client';

export interface AllocationJob {
  jobId: string;
  taskGroup: string;
}

/** A lookup is for labels only: it never holds a publish up for long. */
const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * A lookup that answers undefined, and logs a warning, whenever Nomad cannot tell (unreachable,
 * refused, no such allocation): a publish never fails for a label. Without a token, NOMAD_TOKEN's.
 */
export function allocationJobLookup(nomad: { address: string; token?: string }, logger: Logger): (allocationId: string) => Promise<AllocationJob | undefined> {
  const client = new NomadClient({ ...nomad, timeoutMs: LOOKUP_TIMEOUT_MS });
  return async (allocationId) => {
    try {
      const { JobID, TaskGroup } = await client.readAllocation(allocationId);
      return { jobId: JobID, taskGroup: TaskGroup };
    } catch (error) {
      logger.warn({ allocationId, nomad: client.address, reason: (error as Error).message }, 'could not look up the job of a Nomad allocation; its job label stays empty');
      return undefined;
    }
  };
}
