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
import { decodeFloats, type FloatDtype } from "./float_codecs.ts";

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
  if (bytes.byteOffset % 4 === 0 && n >= 2) {
    const hit = _scanPairs(new Uint32Array(bytes.buffer, bytes.byteOffset, n >>> 1), mask);
    if (hit === -1 && (n & 1) === 1) return _scanSlow(bytes, mask, n - 1, n);
    return hit;
  }
  return _scanSlow(bytes, mask, 0, n);
}

/** Elements per block of the fast scan; only a flagged block is rescanned element by element. */
const SCAN_BLOCK = 4096;

/**
 * Two halves per 32-bit word, branch-free: after masking the exponent, adding the exponent's
 * lowest bit carries into the half's sign position exactly when the exponent is all ones.
 */
function _scanPairs(words: Uint32Array, mask: number): number {
  const wordMask = (mask | (mask << 16)) >>> 0;
  const low = mask & -mask;
  const carry = (low | (low << 16)) >>> 0;
  const n = words.length;
  for (let start = 0; start < n; start += SCAN_BLOCK) {
    const end = Math.min(n, start + SCAN_BLOCK);
    let acc = 0;
    for (let j = start; j < end; j++) acc |= (words[j]! & wordMask) + carry;
    if ((acc & 0x80008000) !== 0) {
      const bytes = new Uint8Array(words.buffer, words.byteOffset + start * 4, (end - start) * 4);
      const i = _scanSlow(bytes, mask, 0, (end - start) * 2);
      if (i >= 0) return start * 2 + i;
    }
  }
  return -1;
}

function _scanSlow(bytes: Uint8Array, mask: number, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    if (((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) & mask) === mask) return i;
  }
  return -1;
}

/**
 * Largest finite |x| of float bytes. For finite floats the magnitude bits (sign cleared) order
 * like the values, so this is an integer max over raw bits, with no decode. Non-finite values are
 * skipped: the main pass reports them with the tensor's name.
 */
export function finiteAmax(dtype: FloatDtype, bytes: Uint8Array): number {
  if (dtype === "F32") {
    const words = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    const bits = new Int32Array(words.buffer, words.byteOffset, words.length >> 2);
    let m = 0;
    for (let i = 0; i < bits.length; i++) {
      const a = bits[i]! & 0x7fffffff;
      if (a > m && a < 0x7f800000) m = a;
    }
    return new Float32Array(new Int32Array([m]).buffer)[0]!;
  }
  const halves = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const bits = new Uint16Array(halves.buffer, halves.byteOffset, halves.length >> 1);
  const inf = dtype === "BF16" ? 0x7f80 : 0x7c00;
  let m = 0;
  for (let i = 0; i < bits.length; i++) {
    const a = bits[i]! & 0x7fff;
    if (a > m && a < inf) m = a;
  }
  const one = new Uint8Array(2);
  one[0] = m & 0xff;
  one[1] = m >> 8;
  const out = new Float32Array(1);
  decodeFloats(dtype, one, out);
  return out[0]!;
}
