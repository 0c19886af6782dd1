// Plain counts of the control API's calls: per method and gRPC status code, how many and how long
// they took. rpc.ts adds to them as each call ends; exporters read them (fabric/telemetry.ts).

import { status } from '@grpc/grpc-js';
import { LatencyCounts } from '../latency';

/** One method's calls that ended with one code. */
export interface ApiCallCounts {
  /** "weft.v1.VolumeService/CreateVolume". */
  method: string;
  /** The gRPC status code's name, e.g. "OK", "NOT_FOUND". */
  code: string;
  latency: LatencyCounts;
}

export class ApiCallStats {
  private readonly calls = new Map<string, ApiCallCounts>();

  /** path is grpc-js's "/weft.v1.VolumeService/CreateVolume"; code a grpc status. */
  record(path: string, code: status, seconds: number): void {
    const key = `${path} ${code}`;
    let counts = this.calls.get(key);
    if (!counts) {
      counts = { method: path.replace(/^\//, ''), code: status[code] ?? String(code), latency: new LatencyCounts() };
      this.calls.set(key, counts);
    }
    counts.latency.record(seconds);
  }

  all(): ApiCallCounts[] {
    return [...this.calls.values()];
  }
}
