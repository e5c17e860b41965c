/**
 * The per-tensor outer scale of NVFP4 and AMD-FP4: a float32 that the whole tensor is divided by
 * before encoding and that the file stores beside it (llama.cpp multiplies `<name>.scale` into
 * the matmul result). Its purpose is to put the block scales where the scale grid has its
 * resolution: without it, weights of magnitude ~0.01 get UE4M3 block scales in the subnormal range
 * (3 to 1 significant bits).
 *
 * Rule: the tensor's largest block maps to the largest scale the rtn rule still rounds to
 * (`cap`): 240 for NVFP4, whose ggml encoder jumps from 240 straight to 448 for every target at
 * or above 248, and 114688 (UE5M3's largest) for AMD-FP4, as ALTO does. The top level maps to it;
 * with Four-over-Six, level 4 does, leaving the 4-candidate of every block representable.
 *
 * @module
 */
import type { Fp4Format } from "./formats.ts";

/** Options for {@linkcode fp4OuterScale}. */
export interface Fp4OuterScaleOptions {
  /** Leave room for the Four-over-Six candidate (see `Fp4SearchOptions.fourOverSix`). @default false */
  fourOverSix?: boolean;
}

/** Largest scale value each format's rtn rule rounds to without jumping past. */
const CAP: Partial<Record<Fp4Format["name"], number>> = { nvfp4: 240, amdfp4: 114688 };
const LIMIT = 2 ** 100;

/**
 * The outer scale for a tensor whose largest |x| is `tensorAmax`, or 1 for a format without
 * outer scales or an all-zero tensor.
 * @throws {RangeError} for a negative or non-finite amax.
 *
 * @example NVFP4 weights up to 0.3
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { FP4_FORMATS } from "./formats.ts";
 * import { fp4OuterScale } from "./outer_scale.ts";
 * strictEqual(fp4OuterScale(FP4_FORMATS.nvfp4, 0.3), Math.fround(0.3 / (6 * 240)));
 * strictEqual(fp4OuterScale(FP4_FORMATS.mxfp4, 0.3), 1);
 * ```
 */
export function fp4OuterScale(
  format: Fp4Format,
  tensorAmax: number,
  options: Fp4OuterScaleOptions = {},
): number {
  if (!(tensorAmax >= 0 && tensorAmax < Infinity)) {
    throw new RangeError(
      `Cannot choose an outer scale as the tensor amax is not finite and ≥ 0: ${tensorAmax}`,
    );
  }
  const divisor = fp4OuterDivisor(format, options);
  if (divisor === null || tensorAmax === 0) return 1;
  const outer = Math.fround(tensorAmax / divisor);
  return Math.min(LIMIT, Math.max(1 / LIMIT, outer));
}

/**
 * What a tensor's amax is divided by to give its outer scale (the level the largest block maps
 * to, times the largest scale the rtn rule still rounds to: an integer below 2^24), or null for a
 * format without outer scales.
 */
export function fp4OuterDivisor(
  format: Fp4Format,
  options: Fp4OuterScaleOptions = {},
): number | null {
  const cap = CAP[format.name];
  if (cap === undefined) return null;
  return (options.fourOverSix ? 4 : format.levels[7]! / 2) * cap;
}
