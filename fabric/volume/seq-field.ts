// Sequence numbers as the metadata files (checkpoint and journal records) store them: 64 bits,
// as two 32-bit little-endian halves, since numbers never restart (they stay below 2^53).

export function writeSeq(buf: Buffer, pos: number, seq: number): void {
  buf.writeUInt32LE(seq % 0x1_0000_0000, pos);
  buf.writeUInt32LE(Math.floor(seq / 0x1_0000_0000), pos + 4);
}

export function readSeq(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos) + buf.readUInt32LE(pos + 4) * 0x1_0000_0000;
}
