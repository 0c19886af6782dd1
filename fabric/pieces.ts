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
