/**
 * Half-precision codecs for test fixtures: float32 to IEEE binary16 and to bfloat16 with
 * round-to-nearest-even, and back. Kept apart from the converter's own codecs so that fixtures and
 * the code under test never share a rounding bug.
 *
 * @module
 */

/**
 * Rounds float32 values to bfloat16 bit patterns, nearest-even; NaN stays a quiet NaN with its sign.
 *
 * @example Ties go to the even neighbour
 * ```ts
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 * import { f32ToBf16Bits } from "./half_floats.ts";
 * // 1 + 2^-8 lies halfway between bf16 1 (0x3f80) and 1 + 2^-7 (0x3f81).
 * assertEquals(f32ToBf16Bits(new Float32Array([1 + 2 ** -8])), new Uint16Array([0x3f80]));
 * ```
 */
export function f32ToBf16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i]!;
    if ((u & 0x7fffffff) > 0x7f800000) {
      out[i] = (u >>> 16) | 0x0040;
      continue;
    }
    // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry out of
    // the mantissa correctly bumps the exponent (up to infinity).
    out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Rounds float32 values to IEEE binary16 bit patterns, nearest-even (the platform's rounding). */
export function f32ToF16Bits(values: Float32Array): Uint16Array {
  const half = Float16Array.from(values);
  return new Uint16Array(half.buffer);
}

/** Widens bfloat16 bit patterns to float32 exactly. */
export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i]! << 16;
  return new Float32Array(wide.buffer);
}

/** Widens IEEE binary16 bit patterns to float32 exactly. */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const half = new Float16Array(bits.buffer, bits.byteOffset, bits.length);
  return Float32Array.from(half);
}
