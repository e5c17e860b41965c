/**
 * Plain float codecs of the converter's hot path: safetensors F32/F16/BF16 little-endian bytes to
 * float32, and float32 to F16 or BF16 bytes, bit-identical to ggml (`ggml_compute_fp16_to_fp32`,
 * `ggml_compute_fp32_to_fp16`, `ggml_compute_fp32_to_bf16` in `ggml/src/ggml-impl.h`).
 *
 * Everything works on whole elements and writes into caller-provided arrays, so a stream can be
 * converted chunk by chunk with no allocation per element. Inner loops read the bytes through
 * 16- or 32-bit typed-array views when the input is aligned for them and fall back to byte reads
 * when it is not. The host must be little-endian (checked when the module loads).
 *
 * A copy F16→F16 or BF16→BF16 does not go through here: the bytes are already final.
 *
 * @module
 */

/** Floating-point dtypes of safetensors that decode to float32 here. */
export type FloatDtype = "F32" | "F16" | "BF16";

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("Cannot use the float codecs as this host is big-endian");
}

/** Bytes per element of a float dtype. */
export function floatDtypeBytes(dtype: FloatDtype): number {
  return dtype === "F32" ? 4 : 2;
}

/**
 * Decodes `dst.length` elements of `dtype` from the start of `src` into `dst`.
 * @throws {RangeError} when `src` holds fewer bytes than `dst.length` elements need.
 */
export function decodeFloats(dtype: FloatDtype, src: Uint8Array, dst: Float32Array): void {
  if (dtype === "F32") decodeF32(src, dst);
  else if (dtype === "F16") decodeF16(src, dst);
  else decodeBf16(src, dst);
}

/** Decodes little-endian float32 bytes into `dst` (a copy). */
export function decodeF32(src: Uint8Array, dst: Float32Array): void {
  const n = dst.length;
  checkSource(src, n, 4);
  // Copy bytes rather than values: that keeps NaN payloads and needs no alignment.
  new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(src.subarray(0, n * 4));
}

/** Decodes bfloat16 bytes into `dst`: each float32 is the 16 bits shifted up. */
export function decodeBf16(src: Uint8Array, dst: Float32Array): void {
  const n = dst.length;
  checkSource(src, n, 2);
  const out = new Int32Array(dst.buffer, dst.byteOffset, n);
  if (src.byteOffset % 4 === 0) {
    // Two elements per 32-bit load: the low half is element 2j, the high half element 2j+1.
    const pairs = n >>> 1;
    const words = new Int32Array(src.buffer, src.byteOffset, pairs);
    for (let j = 0; j < pairs; j++) {
      const w = words[j]!;
      out[2 * j] = w << 16;
      out[2 * j + 1] = w & -65536;
    }
    if ((n & 1) === 1) out[n - 1] = (src[2 * n - 2]! << 16) | (src[2 * n - 1]! << 24);
  } else if (src.byteOffset % 2 === 0) {
    const halves = new Uint16Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = halves[i]! << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = (src[2 * i]! << 16) | (src[2 * i + 1]! << 24);
  }
}

/** Decodes IEEE half bytes into `dst` through a 65536-entry table. */
export function decodeF16(src: Uint8Array, dst: Float32Array): void {
  const n = dst.length;
  checkSource(src, n, 2);
  const table = f16Table();
  if (src.byteOffset % 2 === 0) {
    const halves = new Uint16Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = table[halves[i]!]!;
  } else {
    for (let i = 0; i < n; i++) dst[i] = table[src[2 * i]! | (src[2 * i + 1]! << 8)]!;
  }
}

/**
 * float32 of one half's bits, exactly as ggml: round-trip for every finite value and infinity,
 * and a NaN keeps its sign and payload with the quiet bit set (the multiply ggml does on the NaN
 * quiets a signaling one).
 */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 31) return (sign | 0x7f800000 | (man << 13) | (man === 0 ? 0 : 0x400000)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
  if (man === 0) return sign >>> 0;
  // Subnormal half: man·2^-24, renormalised into a float32 exponent.
  let e = 113;
  let m = man;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/**
 * Half bits of a float32 given by its bits, as `ggml_compute_fp32_to_fp16`: round to nearest even,
 * overflow (|x| ≥ 65520) to ±inf, subnormal halves rounded too, and any NaN to 0x7E00 with the
 * input's sign.
 */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const a = bits & 0x7fffffff;
  if (a >= 0x38800000 && a < 0x477ff000) {
    // Normal half: drop 13 mantissa bits with ties to even; a carry bumps the exponent.
    return sign | (((a + 0xfff + ((a >>> 13) & 1)) >>> 13) - 0x1c000);
  }
  return sign | f16SpecialMagnitude(a);
}

/** Elements per step of the F16 encoder's convert-then-fix-up loop (stays in L1/L2). */
const F16_CHUNK = 8192;

/**
 * Encodes float32 to IEEE half bytes (`dst` must hold `2 * src.length` bytes).
 *
 * With an even-aligned target the conversion itself is the engine's `Float16Array` store (IEEE
 * round to nearest even from the exact double, the same result as ggml's bit trick and about
 * three times faster than doing it on integers here); a second pass over each L1-sized piece
 * then rewrites only what came out as inf or NaN, so NaN gets ggml's 0x7E00 pattern.
 * @returns the index of the first element that does not encode to a finite half (NaN, ±inf, or
 * |x| ≥ 65520 which ggml turns into inf), or -1 when every element does.
 */
export function encodeF16(src: Float32Array, dst: Uint8Array): number {
  const n = src.length;
  checkTarget(dst, n);
  const bits = new Int32Array(src.buffer, src.byteOffset, n);
  let bad = -1;
  if (dst.byteOffset % 2 === 0) {
    const half = new Float16Array(dst.buffer, dst.byteOffset, n);
    const out = new Uint16Array(dst.buffer, dst.byteOffset, n);
    for (let start = 0; start < n; start += F16_CHUNK) {
      const end = Math.min(n, start + F16_CHUNK);
      half.set(src.subarray(start, end), start);
      for (let i = start; i < end; i++) {
        if ((out[i]! & 0x7c00) === 0x7c00) {
          out[i] = f32BitsToF16Bits(bits[i]!);
          if (bad < 0) bad = i;
        }
      }
    }
  } else {
    for (let i = 0; i < n; i++) {
      const w = bits[i]!;
      const h = f32BitsToF16Bits(w);
      dst[2 * i] = h;
      dst[2 * i + 1] = h >>> 8;
      if (bad < 0 && (w & 0x7fffffff) >= 0x477ff000) bad = i;
    }
  }
  return bad;
}

/**
 * bfloat16 bits of a float32 given by its bits, as `ggml_compute_fp32_to_bf16`: round to nearest
 * even (overflowing to ±inf), and a NaN keeps its top 16 bits with the quiet bit forced (`| 0x40`).
 */
export function f32BitsToBf16Bits(bits: number): number {
  const w = bits | 0;
  if ((w & 0x7fffffff) > 0x7f800000) return ((w >>> 16) | 0x40) & 0xffff;
  return ((w + 0x7fff + ((w >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Encodes float32 to bfloat16 bytes (`dst` must hold `2 * src.length` bytes).
 * @returns the index of the first element that does not encode to a finite bfloat16 (NaN, ±inf,
 * or a value that rounds up past the largest bfloat16), or -1 when every element does.
 */
export function encodeBf16(src: Float32Array, dst: Uint8Array): number {
  const n = src.length;
  checkTarget(dst, n);
  const bits = new Int32Array(src.buffer, src.byteOffset, n);
  let bad = -1;
  if (dst.byteOffset % 2 === 0) {
    const out = new Uint16Array(dst.buffer, dst.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const w = bits[i]!;
      // Below 0x7F7F8000 nothing rounds to inf, so the common case needs no NaN test.
      if ((w & 0x7fffffff) < 0x7f7f8000) out[i] = (w + 0x7fff + ((w >> 16) & 1)) >> 16;
      else {
        out[i] = f32BitsToBf16Bits(w);
        if (bad < 0) bad = i;
      }
    }
  } else {
    for (let i = 0; i < n; i++) {
      const w = bits[i]!;
      const h = f32BitsToBf16Bits(w);
      dst[2 * i] = h;
      dst[2 * i + 1] = h >>> 8;
      if (bad < 0 && (w & 0x7fffffff) >= 0x7f7f8000) bad = i;
    }
  }
  return bad;
}

/** Half magnitude for |x| outside the normal half range: NaN, inf/overflow, subnormal or zero. */
function f16SpecialMagnitude(a: number): number {
  if (a > 0x7f800000) return 0x7e00;
  if (a >= 0x477ff000) return 0x7c00;
  if (a >= 0x38800000) return ((a + 0xfff + ((a >>> 13) & 1)) >>> 13) - 0x1c000;
  // Subnormal half k·2^-24: k = m·2^(e-126) with the implicit bit in m, rounded to nearest even.
  // At or below 2^-25 (a tie with 0, which is even) the result is 0.
  if (a <= 0x33000000) return 0;
  const shift = 126 - (a >>> 23);
  const m = (a & 0x7fffff) | 0x800000;
  const k = m >>> shift;
  const rest = m - (k << shift);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (k & 1) === 1) ? k + 1 : k;
}

let table: Float32Array | null = null;

/** float32 of every half bit pattern (256 KiB), built on first use. */
function f16Table(): Float32Array {
  if (table !== null) return table;
  const t = new Float32Array(65536);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) bits[h] = f16BitsToF32Bits(h);
  table = t;
  return t;
}

function checkSource(src: Uint8Array, n: number, size: number): void {
  if (src.length < n * size) {
    throw new RangeError(
      `Cannot decode ${n} elements as the source holds ${src.length} bytes: ${n * size} needed`,
    );
  }
}

function checkTarget(dst: Uint8Array, n: number): void {
  if (dst.length < n * 2) {
    throw new RangeError(
      `Cannot encode ${n} elements as the target holds ${dst.length} bytes: ${n * 2} needed`,
    );
  }
}
