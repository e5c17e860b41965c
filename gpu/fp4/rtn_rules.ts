/**
 * The round-to-nearest scale rules of {@link Fp4RtnRule}, written directly from their definitions
 * with float32 semantics (one `Math.fround` per float32 operation). The encoders never call these
 * per block: {@link fp4Tables} turns each rule into amax thresholds once, and both the CPU twin
 * and the WGSL kernel look the code up by comparing amax's bits with them. Tests check the tables
 * against these functions and these functions against ggml.
 *
 * @module
 */
import type { Fp4Format } from "./formats.ts";
import { scaleValue } from "./scale_grid.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/**
 * ggml's `ggml_fp32_to_ue4m3` (ggml-impl.h): 0 for x ≤ 0 or NaN, clamp to 448, round the 3-bit
 * mantissa half up from the first dropped bit (carry into the exponent), 0x7E from 248 up, and
 * below 2^-6 `(int)(x·512 + 0.5f)` capped at 7.
 * @param x a float32 value.
 */
export function ggmlFp32ToUe4m3(x: number): number {
  if (!(x > 0)) return 0;
  if (x > 448) x = 448;
  const bits = bitsOf(x);
  const exp = ((bits >>> 23) & 0xff) - 127;
  let ueExp = exp + 7;
  if (ueExp <= 0) {
    const man = Math.trunc(Math.fround(Math.fround(x * 512) + 0.5));
    return man > 7 ? 7 : man < 1 ? 0 : man;
  }
  if (ueExp >= 15) return 0x7e;
  let man = ((bits >>> 20) & 7) + ((bits >>> 19) & 1);
  if (man > 7) {
    man = 0;
    ueExp++;
    if (ueExp >= 15) return 0x7e;
  }
  return (ueExp << 3) | man;
}

/**
 * ggml's MXFP4 exponent `floorf(log2f(amax)) − 2 + 127`, clamped to 0..254 (ggml's uint8 cast is
 * undefined below 2^-125 and writes the invalid 0xFF at 2^-126). log2f is float32, so an amax just
 * below a power of two rounds up to it; the float64 log2 rounded to float32 gives the same
 * integer, as those cases sit far from a float32 rounding tie.
 */
export function ggmlE8m0Code(amax: number): number {
  if (!(amax > 0)) return 0;
  const e = Math.floor(Math.fround(Math.log2(amax))) - 2 + 127;
  return e < 0 ? 0 : e > 254 ? 254 : e;
}

/**
 * The code in `[lo, hi]` whose scale is nearest to `t`, ties to the lower code, or to the even one
 * when `even`. Scales rise strictly with the code in that range.
 */
export function nearestScaleCode(
  format: Fp4Format,
  t: number,
  even: boolean,
): number {
  const lo = format.minSearchCode;
  const hi = format.maxCode;
  if (!(t > scaleValue(format.grid, lo))) return lo;
  if (t >= scaleValue(format.grid, hi)) return hi;
  // Largest c with S(c) ≤ t; S(lo) < t ≤ ... < S(hi).
  let a = lo;
  let b = hi;
  while (b - a > 1) {
    const mid = (a + b) >> 1;
    if (scaleValue(format.grid, mid) <= t) a = mid;
    else b = mid;
  }
  const middle = (scaleValue(format.grid, a) + scaleValue(format.grid, a + 1)) / 2;
  if (t < middle) return a;
  if (t > middle) return a + 1;
  return even ? (a % 2 === 0 ? a : a + 1) : a;
}

/** Which block maximum a scale rule aims at: the top level (6, or 5 for ROCmFP4) or 4. */
export type Fp4RtnTarget = "top" | "four";

/**
 * The `rtn` scale code of a block (or sub-block) whose largest magnitude is `amax` (float32,
 * after the outer scale): ggml's rule for NVFP4 and MXFP4, the nearest rules otherwise. With
 * target "four" the block maximum maps to level 4 instead of the top level (Four-over-Six).
 */
export function rtnScaleCode(format: Fp4Format, amax: number, target: Fp4RtnTarget): number {
  const top = format.levels[7]! / 2;
  const divisor = target === "four" ? 4 : top;
  switch (format.rtnRule) {
    case "ggml-ue4m3":
      return ggmlFp32ToUe4m3(Math.fround(amax / divisor));
    case "ggml-e8m0": {
      if (!(amax > 0)) return 0;
      const e = ggmlE8m0Code(amax) + (target === "four" ? 1 : 0);
      return e > format.maxCode ? format.maxCode : e;
    }
    case "nearest-down":
      return nearestScaleCode(format, Math.fround(amax / divisor), false);
    case "nearest-even":
      return nearestScaleCode(format, Math.fround(amax / divisor), true);
  }
}
