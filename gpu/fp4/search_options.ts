/**
 * Options of the FP4 scale search and their validation, shared by the CPU twin and the GPU shell.
 * Options are checked once, before any work, and resolved into the plain numbers both
 * implementations use.
 *
 * @module
 */
import type { Fp4Format } from "./formats.ts";

/**
 * How each sub-block's scale code is chosen:
 * - `rtn`: the format's round-to-nearest rule (ggml's for NVFP4 and MXFP4, byte-identical).
 * - `window`: the rtn code first, then codes rtn−1, rtn+1, ..., rtn−W, rtn+W; the lowest weighted
 *   squared error wins, ties to the earlier candidate. W = 0 is `rtn`.
 * - `full`: the lowest weighted squared error over every code the format can write, ties to the
 *   lower code; pruned by bounds that provably cannot change the result (see encode_cpu.ts).
 */
export type Fp4SearchMode = "rtn" | "window" | "full";

/** Options of the scale search. */
export interface Fp4SearchOptions {
  /** Scale search. @default "rtn" */
  mode?: Fp4SearchMode;
  /** Codes tried on each side of the rtn code in `window` mode. @default 12 */
  window?: number;
  /**
   * Importance per input column (length `nPerRow`: mean x² of the activations), weighting the
   * squared error of the searches; finite and ≥ 0. Null or absent: every element weighs 1.
   * @default null
   */
  imatrix?: Float32Array | null;
  /**
   * Per-tensor outer scale (NVFP4 and AMD-FP4 only), rounded to float32: elements are multiplied
   * by fl(1/outerScale) before encoding, and the file carries outerScale beside the tensor. See
   * `fp4OuterScale`. @default 1
   */
  outerScale?: number;
  /**
   * Also try the scale that maps the block maximum to level 4 instead of the top level
   * (Four-over-Six) in `rtn` and `window` modes; `full` tries every code anyway. @default false
   */
  fourOverSix?: boolean;
}

/** Default half-width of the `window` search (llama.cpp PR #25153's ±12). */
export const DEFAULT_WINDOW = 12;
/** Outer scales are kept within 2^±100 so that their reciprocal is a normal float32. */
const OUTER_LIMIT = 2 ** 100;

/** Search modes as the kernel numbers them. */
export const MODE_RTN = 0;
export const MODE_WINDOW = 1;
export const MODE_FULL = 2;

/** Options resolved into what the encoders read. */
export interface ResolvedFp4Search {
  readonly mode: typeof MODE_RTN | typeof MODE_WINDOW | typeof MODE_FULL;
  readonly window: number;
  readonly fourOverSix: boolean;
  /** The outer scale rounded to float32. */
  readonly outerScale: number;
  /** fl(1/outerScale): elements are multiplied by it (1 when there is no outer scale). */
  readonly invOuter: number;
  /** Float32 bits of the largest |x| whose product with invOuter stays finite. */
  readonly maxAbsBits: number;
  readonly imatrix: Float32Array | null;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function largestSafeBits(invOuter: number): number {
  const ok = (bits: number) => {
    u32[0] = bits;
    return Number.isFinite(Math.fround(f32[0]! * invOuter));
  };
  if (ok(0x7f7fffff)) return 0x7f7fffff;
  let lo = 0;
  let hi = 0x7f7fffff;
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Checks the options against a format and row length and resolves them.
 * @throws {RangeError} for a row length that is not whole blocks, a window outside 0..255, an
 * outer scale outside 2^±100 (or other than 1 for a format without one), or
 * an imatrix of the wrong length or with a negative or non-finite entry.
 */
export function resolveFp4Search(
  format: Fp4Format,
  nPerRow: number,
  options: Fp4SearchOptions = {},
): ResolvedFp4Search {
  if (!Number.isInteger(nPerRow) || nPerRow <= 0 || nPerRow % format.blockSize !== 0) {
    throw new RangeError(
      `Cannot encode ${format.label} rows as their length ${nPerRow} is not a positive multiple of ${format.blockSize}`,
    );
  }
  const modeName = options.mode ?? "rtn";
  const mode = modeName === "rtn"
    ? MODE_RTN
    : modeName === "window"
    ? MODE_WINDOW
    : modeName === "full"
    ? MODE_FULL
    : null;
  if (mode === null) {
    throw new RangeError(
      `Cannot search ${format.label} scales as the mode is not rtn, window or full: ${modeName}`,
    );
  }
  const window = options.window ?? DEFAULT_WINDOW;
  if (!Number.isInteger(window) || window < 0 || window > 255) {
    throw new RangeError(
      `Cannot search ${format.label} scales as the window is not an integer from 0 to 255: ${window}`,
    );
  }
  const outerScale = Math.fround(options.outerScale ?? 1);
  if (!(outerScale >= 1 / OUTER_LIMIT && outerScale <= OUTER_LIMIT)) {
    throw new RangeError(
      `Cannot use the outer scale as it is not from 2^-100 to 2^100: ${options.outerScale}`,
    );
  }
  if (outerScale !== 1 && !format.outerScale) {
    throw new RangeError(
      `Cannot use an outer scale as ${format.label} has none: ${outerScale}`,
    );
  }
  const imatrix = options.imatrix ?? null;
  if (imatrix !== null) {
    if (imatrix.length !== nPerRow) {
      throw new RangeError(
        `Cannot use the imatrix as it has ${imatrix.length} entries for rows of ${nPerRow}`,
      );
    }
    for (let i = 0; i < imatrix.length; i++) {
      const v = imatrix[i]!;
      if (!(v >= 0 && v < Infinity)) {
        throw new RangeError(`Cannot use the imatrix as entry ${i} is not finite and ≥ 0: ${v}`);
      }
    }
  }
  const invOuter = Math.fround(1 / outerScale);
  return {
    mode,
    window,
    fourOverSix: options.fourOverSix ?? false,
    outerScale,
    invOuter,
    maxAbsBits: invOuter === 1 ? 0x7f7fffff : largestSafeBits(invOuter),
    imatrix,
  };
}
