/**
 * The error an FP4 encoder throws for an input element it cannot encode (NaN, ±inf, or a value
 * that overflows float32 once divided by the outer scale). It carries the position so that the
 * converter can name the tensor and the element.
 *
 * @module
 */

/** An input element an FP4 encoder cannot encode. */
export class Fp4InputError extends RangeError {
  /** Index of the element in the rows passed to the encoder. */
  readonly index: number;
  /** Its row in those rows. */
  readonly row: number;
  /** Its column. */
  readonly column: number;
  /** The format's label and the rest of the sentence, to restate the error at another index. */
  readonly label: string;
  readonly reason: string;

  /**
   * @param label the format's label ("NVFP4").
   * @param index element index in the encoder's input.
   * @param nPerRow elements per row.
   * @param reason the rest of the sentence: "is NaN", "is infinite", ...
   */
  constructor(label: string, index: number, nPerRow: number, reason: string) {
    const row = Math.floor(index / nPerRow);
    const column = index - row * nPerRow;
    super(`Cannot encode ${label} as element ${index} (row ${row}, column ${column}) ${reason}`);
    this.name = "Fp4InputError";
    this.index = index;
    this.row = row;
    this.column = column;
    this.label = label;
    this.reason = reason;
  }

  /** The same error for an input that starts `elements` elements later. */
  shifted(elements: number, nPerRow: number): Fp4InputError {
    return new Fp4InputError(this.label, this.index - elements, nPerRow, this.reason);
  }
}

/** Why a float32 cannot be encoded: "is NaN" or "is infinite". */
export function nonFiniteReason(value: number): string {
  return Number.isNaN(value) ? "is NaN" : "is infinite";
}
