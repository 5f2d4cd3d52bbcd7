// Protobuf wire-format pieces shared by the hand-written codecs (codec.ts for ModelService, kserve/codec.ts for the
// v2 API): wire types, varint writing and the empty buffer. Each decoder keeps its own cursor and error rules; only these are common.

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH = 2;
export const WIRE_FIXED32 = 5;

/** The empty bytes: a decoder's cursor between messages, an absent field. One shared, never written to. */
export const EMPTY_BUFFER: Buffer = Buffer.alloc(0);

/** Bytes the varint of a non-negative integer takes. */
export function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Writes the varint of a non-negative integer at `at`; returns the position after it. */
export function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
}
