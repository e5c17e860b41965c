/**
 * Per-element weights of the FP4 scale search, from an imatrix and the format's weighting rule.
 * `column` weights are the imatrix itself, indexed by column. `row-sigma` weights
 * (ROCmFP4's reference) depend on each row's mean square, so they are computed here on the CPU in
 * float32 (sqrt is correctly rounded in float64 and so after `Math.fround`; WGSL's is not) and
 * handed to either implementation as one value per element.
 *
 * @module
 */
import type { Fp4Format } from "./formats.ts";
import { Fp4InputError, nonFiniteReason } from "./input_error.ts";
import type { ResolvedFp4Search } from "./search_options.ts";

/** No weights: every element weighs 1. */
export const WEIGHTS_NONE = 0;
/** One weight per column, `data` has nPerRow entries. */
export const WEIGHTS_COLUMN = 1;
/** One weight per element, `data` is as long as the rows. */
export const WEIGHTS_ELEMENT = 2;

/** Weights for one call. */
export type Fp4Weights =
  | { readonly kind: typeof WEIGHTS_NONE }
  | { readonly kind: typeof WEIGHTS_COLUMN | typeof WEIGHTS_ELEMENT; readonly data: Float32Array };

/**
 * The weights of `rows` (whole rows of `nPerRow`) under the format's weighting rule.
 * @throws {Fp4InputError} for a NaN or infinite element (found first, as the encoders would).
 * @throws {RangeError} when a row's Σx² overflows float32 under `row-sigma` weighting.
 */
export function fp4Weights(
  format: Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  search: ResolvedFp4Search,
): Fp4Weights {
  const imatrix = search.imatrix;
  if (imatrix === null) return { kind: WEIGHTS_NONE };
  if (format.weighting === "column") return { kind: WEIGHTS_COLUMN, data: imatrix };
  const f = Math.fround;
  const out = new Float32Array(rows.length);
  for (let start = 0; start < rows.length; start += nPerRow) {
    let sum = 0;
    for (let j = 0; j < nPerRow; j++) {
      const x = rows[start + j]!;
      if (!Number.isFinite(x)) {
        throw new Fp4InputError(format.label, start + j, nPerRow, nonFiniteReason(x));
      }
      sum = f(sum + f(x * x));
    }
    const sigma2 = f(sum / nPerRow);
    if (!Number.isFinite(sigma2)) {
      throw new RangeError(
        `Cannot weight ${format.label} row ${start / nPerRow} as its sum of squares is not finite`,
      );
    }
    for (let j = 0; j < nPerRow; j++) {
      const x = rows[start + j]!;
      const w = f(imatrix[j]! * f(Math.sqrt(f(sigma2 + f(x * x)))));
      if (!Number.isFinite(w)) {
        throw new RangeError(
          `Cannot weight ${format.label} element ${start + j} as its weight overflows float32`,
        );
      }
      out[start + j] = w;
    }
  }
  return { kind: WEIGHTS_ELEMENT, data: out };
}
