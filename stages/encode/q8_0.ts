/**
 * Q8_0 encoding, byte-identical to ggml's `quantize_row_q8_0_ref` (what `quantize_q8_0` and
 * `ggml_quantize_chunk` run; the imatrix plays no part). Per 32-element block, in float32:
 * amax = max|x|, d = amax/127, id = d ? 1/d : 0, d stored as an f16 (round to nearest even), and
 * q_j = roundf(x_j·id) (half away from zero) computed from the float32 id, not the f16 one.
 *
 * How the float32 arithmetic is reproduced: every product and quotient of two float32 values is
 * exact or correctly rounded in float64, so one `Math.fround` per operation gives the float32
 * result. The maximum runs on the integer bits of |x| (their order is the order of the values),
 * which also spots NaN and ±inf in the same compare. `roundf` of the float32 p = |x|·id is
 * `trunc(p + 0.5)` (exact in float64, and `| 0` truncates), and the sign goes back on as an
 * integer negate taken from the sign bit of x.
 *
 * Tiny blocks: when amax < 127·2^-128 the float32 1/d overflows to inf, every product is inf (or
 * NaN for a zero) and ggml's float→int8 conversion yields 0 on x86-64; d is then far below the
 * smallest half, so the whole block is zero bytes. `x | 0` maps inf and NaN to 0 the same way.
 *
 * Non-finite input: ggml writes meaningless bytes for a block that holds NaN or ±inf (its MAX
 * macro even drops a NaN unless it is the last of the block). The converter must refuse such a
 * tensor, so {@link encodeQ8_0} returns the index of the first non-finite element; the detection
 * costs one compare per block because it falls out of the max. The bytes written for such a block
 * are unspecified.
 *
 * @module
 */
import { GGML_TYPES, rowBytes } from "../../pipeline/ggml_types.ts";
import { decodeFloats, f32BitsToF16Bits, floatDtypeBytes } from "./float_codecs.ts";
import type { FloatDtype } from "./float_codecs.ts";

/** Elements per Q8_0 block. */
export const Q8_0_BLOCK = 32;
/** Bytes per Q8_0 block: f16 d, then 32 int8 codes. */
export const Q8_0_BLOCK_BYTES = 34;

/**
 * Bytes of `n` elements in Q8_0.
 * @throws {RangeError} when `n` is not a multiple of 32.
 */
export function q8_0Bytes(n: number): number {
  return rowBytes(GGML_TYPES.q8_0, n);
}

const scratchF32 = new Float32Array(1);
const scratchBits = new Int32Array(scratchF32.buffer);

/**
 * Encodes whole rows (any number of 32-element blocks) to Q8_0 at the start of `dst`.
 * @returns the index in `src` of the first NaN or ±inf, or -1 when all are finite (the encoded
 * bytes of a block holding one are unspecified).
 * @throws {RangeError} when `src.length` is not a multiple of 32 or `dst` is too small.
 */
export function encodeQ8_0(src: Float32Array, dst: Uint8Array): number {
  const n = src.length;
  checkTarget(n, dst);
  return encodeBlocks(src, new Int32Array(src.buffer, src.byteOffset, n), 0, n, dst, 0);
}

/** Elements decoded per step by {@link encodeQ8_0FromBytes}: 16 KiB of float32, L1-resident. */
const PIECE = 4096;
const pieceF32 = new Float32Array(PIECE);
const pieceBits = new Int32Array(pieceF32.buffer);

/**
 * Decodes safetensors bytes of `dtype` and encodes them to Q8_0 in one pass, a few blocks at a
 * time through a small float32 buffer, so no full-size float32 copy of the source is made (as fast
 * as or up to ~10% faster than {@link decodeFloats} followed by {@link encodeQ8_0}, and 4 bytes per
 * element less memory).
 * @param src whole elements, a multiple of 32 of them, at any alignment.
 * @returns the element index of the first NaN or ±inf, or -1 when all are finite.
 * @throws {RangeError} when the element count is not a multiple of 32 or `dst` is too small.
 */
export function encodeQ8_0FromBytes(dtype: FloatDtype, src: Uint8Array, dst: Uint8Array): number {
  const size = floatDtypeBytes(dtype);
  if (src.length % size !== 0) {
    throw new RangeError(
      `Cannot encode ${dtype} bytes to Q8_0 as ${src.length} bytes are not whole elements`,
    );
  }
  const n = src.length / size;
  checkTarget(n, dst);
  let bad = -1;
  for (let i = 0, o = 0; i < n; i += PIECE, o += (PIECE / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES) {
    const count = Math.min(PIECE, n - i);
    const values = count === PIECE ? pieceF32 : pieceF32.subarray(0, count);
    decodeFloats(dtype, src.subarray(i * size, (i + count) * size), values);
    const b = encodeBlocks(values, pieceBits, 0, count, dst, o);
    if (b >= 0 && bad < 0) bad = i + b;
  }
  return bad;
}

/**
 * Encodes `src[start, end)` (whole blocks) to `dst` from byte `o` on; `bits` views `src`.
 * @returns the index of the first non-finite element in the range, or -1.
 */
function encodeBlocks(
  src: Float32Array,
  bits: Int32Array,
  start: number,
  end: number,
  dst: Uint8Array,
  o: number,
): number {
  let bad = -1;
  for (let base = start; base < end; base += Q8_0_BLOCK, o += Q8_0_BLOCK_BYTES) {
    // Branch-free integer max of the |x| bits in four chains: with t = a - m, m += max(t, 0),
    // i.e. t & ~(t >> 31). Both are 31-bit non-negative, so t cannot overflow. (A branch here
    // mispredicts on every new maximum and costs about twice as much.)
    let m0 = 0, m1 = 0, m2 = 0, m3 = 0, t = 0;
    for (let k = base; k < base + Q8_0_BLOCK; k += 4) {
      t = (bits[k]! & 0x7fffffff) - m0;
      m0 += t & ~(t >> 31);
      t = (bits[k + 1]! & 0x7fffffff) - m1;
      m1 += t & ~(t >> 31);
      t = (bits[k + 2]! & 0x7fffffff) - m2;
      m2 += t & ~(t >> 31);
      t = (bits[k + 3]! & 0x7fffffff) - m3;
      m3 += t & ~(t >> 31);
    }
    t = m1 - m0;
    m0 += t & ~(t >> 31);
    t = m3 - m2;
    m2 += t & ~(t >> 31);
    t = m2 - m0;
    m0 += t & ~(t >> 31);
    if (m0 >= 0x7f800000 && bad < 0) bad = firstNonFinite(bits, base);

    scratchBits[0] = m0;
    const d = Math.fround(scratchF32[0]! / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    scratchF32[0] = d;
    const dh = f32BitsToF16Bits(scratchBits[0]!);
    dst[o] = dh;
    dst[o + 1] = dh >>> 8;

    // q = sign(x)·trunc(fround(|x|·id) + 0.5), the sign applied as (m ^ s) - s with s = 0 or -1.
    const shift = o + 2 - base;
    for (let k = base; k < base + Q8_0_BLOCK; k++) {
      const s = bits[k]! >> 31;
      const m = (Math.fround(Math.abs(src[k]!) * id) + 0.5) | 0;
      dst[shift + k] = (m ^ s) - s;
    }
  }
  return bad;
}

function checkTarget(n: number, dst: Uint8Array): void {
  const need = q8_0Bytes(n);
  if (dst.length < need) {
    throw new RangeError(
      `Cannot encode ${n} elements to Q8_0 as the target holds ${dst.length} bytes: ${need} needed`,
    );
  }
}

function firstNonFinite(bits: Int32Array, base: number): number {
  for (let k = base; k < base + Q8_0_BLOCK; k++) {
    if ((bits[k]! & 0x7f800000) === 0x7f800000) return k;
  }
  return base;
}
