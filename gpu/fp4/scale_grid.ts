/**
 * Values of the FP4 scale bytes (UE4M3, E8M0, UE5M3). Every scale value is a short binary
 * fraction (at most 4 significant bits) times a power of two, so it is exact in float32 and in
 * float64, and a level (at most 4 bits) times a scale is exact too.
 *
 * @module
 */
import type { Fp4ScaleGrid } from "./formats.ts";

/**
 * The value of scale byte `code` (the full scale S; elements decode to E2M1(code)·S), or 0 for a
 * byte that decodes to zero (UE4M3 0x00 and 0x7F, UE5M3 0x00), or NaN for UE5M3 0xFF.
 * Bytes are read as ggml reads them: UE4M3 ignores bit 7.
 */
export function scaleValue(grid: Fp4ScaleGrid, code: number): number {
  switch (grid) {
    case "ue4m3": {
      const c = code & 0x7f;
      if (c === 0x7f) return 0;
      const e = c >> 3;
      const m = c & 7;
      return e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7);
    }
    case "e8m0":
      return code === 0xff ? NaN : 2 ** (code - 127);
    case "ue5m3": {
      if (code === 0xff) return NaN;
      const e = code >> 3;
      const m = code & 7;
      return e === 0 ? m * 2 ** -17 : (1 + m / 8) * 2 ** (e - 15);
    }
  }
}

/** A positive half scale H = S/2 split as sig·2^exp with sig in [1, 2). */
export interface HalfScaleParts {
  readonly sig: number;
  readonly exp: number;
}

/** H = S/2 of a scale byte as significand and exponent, or null when the scale is zero. */
export function halfScaleParts(grid: Fp4ScaleGrid, code: number): HalfScaleParts | null {
  const h = scaleValue(grid, code) / 2;
  if (!(h > 0)) return null;
  const exp = Math.floor(Math.log2(h));
  // log2 of an exact power of two is exact; nudge in case of a last-bit error elsewhere.
  const e = h / 2 ** exp >= 2 ? exp + 1 : h / 2 ** exp < 1 ? exp - 1 : exp;
  return { sig: h / 2 ** e, exp: e };
}
