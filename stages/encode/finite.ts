/**
 * Finding NaN and ±inf in weights, so the converter can refuse a tensor by name instead of
 * writing garbage. The encoders report the same thing for free while they encode (see
 * `encodeQ8_0`, `encodeF16`, `encodeBf16`); these scans serve the paths that only copy bytes
 * (F32→F32, F16→F16, BF16→BF16).
 *
 * Each scan tests the exponent field of every element through an integer view: one load, one
 * mask and one compare per element, with an early exit on the first hit.
 *
 * @module
 */

/** Index of the first NaN or ±inf in `src`, or -1 when every element is finite. */
export function findNonFinite(src: Float32Array): number {
  const bits = new Int32Array(src.buffer, src.byteOffset, src.length);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
  }
  return -1;
}

/**
 * Index of the first NaN or ±inf among little-endian 16-bit floats, or -1 when all are finite.
 * @param bytes whole elements (an odd trailing byte is ignored), at any alignment.
 * @param dtype "F16" (IEEE half) or "BF16".
 */
export function findNonFiniteHalf(bytes: Uint8Array, dtype: "F16" | "BF16"): number {
  const mask = dtype === "F16" ? 0x7c00 : 0x7f80;
  const n = bytes.length >>> 1;
  if (bytes.byteOffset % 2 === 0) {
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = 0; i < n; i++) {
      if ((halves[i]! & mask) === mask) return i;
    }
    return -1;
  }
  for (let i = 0; i < n; i++) {
    if (((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) & mask) === mask) return i;
  }
  return -1;
}
