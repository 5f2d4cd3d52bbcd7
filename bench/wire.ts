// Reading protobuf wire format in place, for the load generator (answer fields) and the OTLP sink (span counts):
// tags, varints and skipping, over a buffer, without decoding into objects.

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

export class WireReader {
  bytes: Uint8Array = new Uint8Array(0);
  at = 0;

  /** Starts reading `bytes` from the beginning; returns this, so one reader can serve every message. */
  reset(bytes: Uint8Array): this {
    this.bytes = bytes;
    this.at = 0;
    return this;
  }

  get done(): boolean {
    return this.at >= this.bytes.length;
  }

  /** An unsigned varint (exact up to 2^53). */
  varint(): number {
    let value = 0;
    let factor = 1;
    let byte: number;
    do {
      byte = this.bytes[this.at++];
      value += (byte & 0x7f) * factor;
      factor *= 128;
    } while (byte >= 0x80 && this.at < this.bytes.length);
    return value;
  }

  /** Steps over a field's value of this wire type; false for the group types, which these messages do not use. */
  skip(wire: number): boolean {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_FIXED64) this.at += 8;
    else if (wire === WIRE_FIXED32) this.at += 4;
    else if (wire === WIRE_LENGTH_DELIMITED) {
      const length = this.varint(); // read before adding: `this.at += this.varint()` would add to the old position
      this.at += length;
    } else return false;
    return true;
  }
}
