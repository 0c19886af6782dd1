// A run of bytes held as several buffers in order: a WRITE's data as it came off the socket, left
// in the socket's chunks because joining them into one buffer would cost a copy of every byte.

/** The buffers whose concatenation is the data. */
export type Pieces = readonly Buffer[];

/** The pieces of a write's data, which is either one buffer or already pieces. */
export function piecesOf(data: Buffer | Pieces): Pieces {
  return Buffer.isBuffer(data) ? [data] : data;
}

export function totalBytes(pieces: Pieces): number {
  let bytes = 0;
  for (const piece of pieces) bytes += piece.length;
  return bytes;
}

/** Bytes [fromBytes, toBytes) of the concatenation, as views of the pieces (no copy). */
export function slicePieces(pieces: Pieces, fromBytes: number, toBytes: number): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0; // where the current piece starts in the concatenation
  for (const piece of pieces) {
    const end = pos + piece.length;
    const from = Math.max(fromBytes, pos);
    const to = Math.min(toBytes, end);
    if (to > from) out.push(from === pos && to === end ? piece : piece.subarray(from - pos, to - pos));
    pos = end;
  }
  return out;
}

/** Copies the concatenation of the pieces into target from targetStart. */
export function copyPieces(pieces: Pieces, target: Buffer, targetStart: number): void {
  let at = targetStart;
  for (const piece of pieces) at += piece.copy(target, at);
}

/**
 * Below this, a piece that follows another short one is joined to it. Node gives every socket read
 * a buffer of its own, which costs a few hundred bytes beyond its data: a client that sends a byte
 * per segment would otherwise have weftd hold hundreds of times the bytes it counts, and run out of
 * memory. Joined so, no two short pieces lie side by side (at least half of them are this long).
 */
export const SHORT_PIECE_BYTES = 1024;

/**
 * The buffers short pieces are joined in, with how many bytes each holds: each has room for two
 * short pieces, and takes the next short piece at its end while the last piece ends where its
 * bytes do (nothing else then holds the room after them). Of their own, not slices of Node's
 * shared pool, where a kept piece of 1 KiB would hold a slab of 8 KiB alive: at most twice the
 * bytes they hold, and each byte copied once.
 */
const joinBuffers = new WeakMap<ArrayBufferLike, number>();

/**
 * A piece that is a view of a buffer more than this many times its size is copied out of it: kept as
 * a view, it would hold the whole buffer (a socket read of up to 64 KiB, the rest of it other
 * requests' bytes, answered and gone) while counting its own few bytes. A 4 KiB write in a 64 KiB
 * read stays a view.
 */
const MAX_HELD_RATIO = 32;

/** Adds piece at the end of pieces, joining it to the last if both are short. */
export function appendPiece(pieces: Buffer[], piece: Buffer): void {
  const at = pieces.length - 1;
  const last = pieces[at];
  if (at < 0 || piece.length >= SHORT_PIECE_BYTES || last.length >= SHORT_PIECE_BYTES) {
    pieces.push(piece.buffer.byteLength > MAX_HELD_RATIO * piece.length ? ownCopy([piece]) : piece);
    return;
  }
  const end = last.byteOffset + last.length;
  if (joinBuffers.get(last.buffer) === end && end + piece.length <= last.buffer.byteLength) {
    piece.copy(Buffer.from(last.buffer, end, piece.length));
    joinBuffers.set(last.buffer, end + piece.length);
    pieces[at] = Buffer.from(last.buffer, last.byteOffset, last.length + piece.length);
    return;
  }
  pieces[at] = ownCopy([last, piece]);
}

/** The parts' bytes in a buffer of their own: when they are short, with room after them for the next short piece. */
function ownCopy(parts: Pieces): Buffer {
  const bytes = totalBytes(parts);
  const own = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * SHORT_PIECE_BYTES));
  copyPieces(parts, own, 0);
  joinBuffers.set(own.buffer, bytes);
  return own.subarray(0, bytes);
}
