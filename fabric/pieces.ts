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
 * memory. Joined so, no two short pieces lie side by side (at least half of them are this long), and
 * each join copies under twice this.
 */
export const SHORT_PIECE_BYTES = 1024;

/** Adds piece at the end of pieces, joining it to the last if both are short. */
export function appendPiece(pieces: Buffer[], piece: Buffer): void {
  const last = pieces.length - 1;
  if (last >= 0 && piece.length < SHORT_PIECE_BYTES && pieces[last].length < SHORT_PIECE_BYTES) pieces[last] = Buffer.concat([pieces[last], piece]);
  else pieces.push(piece);
}
