// A forwarding node's connections to a volume's primary, fenced by generation (the primary's side).
//
// A forwarder gives up on a connection that does not answer in time (the primary may be waiting
// for a failed replica's removal) and sends its requests again on a new one. What it sent on the
// old one may still wait, unread, in the primary's socket buffer (the server pauses reading a
// connection with many requests in flight). Run later, after the client's next write to the same
// range (which it could send once the request sent again was answered), an old write would
// overwrite it. So each connection names its forwarder and a generation, and once a newer one has
// opened, an older one's requests that have not begun are refused (ESHUTDOWN, to a forwarder no
// longer listening). Those already running began before the newer connection existed: before
// anything was sent again.

import { IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughDevice } from '../volume/pass-through-device';

/** A forwarder (random, for its life) and the generation of one of its connections (counted up). */
export interface ForwarderConnection {
  forwarder: string;
  generation: number;
}

/** What the primary knows of one forwarder of one volume: its newest connection, and the node it runs on if it said. */
interface Forwarder {
  newest: number;
  by?: string;
}

export class ForwarderFence {
  private readonly forwarders = new Map<string, Forwarder>();

  /**
   * The device the connection sees, or undefined if a newer one of its forwarder has opened already.
   * by: the forwarder's node. outer: fences checked before the generation (the attach claim's, which
   * may wait for a read of the store): the generation is checked last, at once before the device, so
   * that a change held meanwhile does not begin once a newer connection has opened.
   */
  admit(
    volume: string,
    connection: ForwarderConnection,
    device: BlockDevice,
    by?: string,
    outer: (fenced: BlockDevice) => BlockDevice = (fenced) => fenced,
  ): { device: BlockDevice; close(): void } | undefined {
    const key = `${volume}/${connection.forwarder}`;
    const known = this.forwarders.get(key);
    if (known && known.newest >= connection.generation) return undefined;
    const forwarder: Forwarder = known ?? { newest: connection.generation };
    forwarder.newest = connection.generation;
    forwarder.by = by;
    this.forwarders.set(key, forwarder);
    // Asked once per request: a field, no lookup.
    const current = () => forwarder.newest === connection.generation;
    return {
      device: outer(new GenerationFencedDevice(device, current, `volume ${volume}: a newer connection of this forwarder has opened`)),
      // The newest one's end forgets the forwarder; the older ones stay refused (no generation is -1).
      close: () => {
        if (!current()) return;
        forwarder.newest = -1;
        this.forwarders.delete(key);
      },
    };
  }

  /** The nodes whose forwarders have a connection to the volume open (as they named themselves), each once. */
  connected(volume: string): string[] {
    const nodes = [...this.forwarders].filter(([key]) => key.startsWith(`${volume}/`)).flatMap(([, f]) => (f.by === undefined ? [] : [f.by]));
    return [...new Set(nodes)];
  }
}

class GenerationFencedDevice extends PassThroughDevice {
  constructor(below: BlockDevice, private readonly current: () => boolean, private readonly why: string) {
    super(below);
  }

  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.current() ? super.read(offsetBytes, lengthBytes) : this.refused();
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.current() ? super.write(offsetBytes, data, fua) : this.refused();
  }

  override flush(): Promise<void> {
    return this.current() ? super.flush() : this.refused();
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.current() ? super.trim(offsetBytes, lengthBytes, fua) : this.refused();
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.current() ? super.writeZeroes(offsetBytes, lengthBytes, options) : this.refused();
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.current() ? super.blockStatus(offsetBytes, lengthBytes) : this.refused();
  }

  private refused(): Promise<never> {
    return Promise.reject(new IoError('ESHUTDOWN', this.why));
  }
}
