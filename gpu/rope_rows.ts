/**
 * LLaMA-family Q/K rows go from Hugging Face's rotate-half layout to llama.cpp's interleaved rope
 * pairs: within each head of `headRows` rows, new row `2i + p` is old row `p·headRows/2 + i`.
 * The CPU does it by copying rows (stages/qk_permute_stream.ts); the FP4 kernel reads rows in
 * this order instead (encode.wgsl's `source_of`), which saves the host a copy of every Q/K byte.
 *
 * @module
 */

/** The checkpoint row that output row `row` comes from. */
export function ropeSourceRow(row: number, headRows: number): number {
  const h = row % headRows;
  return row - h + (h % 2) * (headRows / 2) + (h >> 1);
}

/**
 * Permutes the rows of whole heads into `out` (a new buffer by default).
 * @param rowBytes bytes of one row
 * @param headRows rows per head (even)
 */
export function permuteRopeRows(
  bytes: Uint8Array,
  rowBytes: number,
  headRows: number,
  out: Uint8Array = new Uint8Array(bytes.length),
): Uint8Array {
  for (let row = 0; row * rowBytes < bytes.length; row++) {
    const from = ropeSourceRow(row, headRows) * rowBytes;
    out.set(bytes.subarray(from, from + rowBytes), row * rowBytes);
  }
  return out;
}

/**
 * Checks that `rows` rows are whole heads of `headRows` (0: no permutation).
 * @throws {RangeError} naming `what` otherwise.
 */
export function checkRopeHeads(what: string, rows: number, headRows: number): void {
  if (headRows === 0) return;
  if (!Number.isInteger(headRows) || headRows < 2 || headRows % 2 !== 0 || rows % headRows !== 0) {
    throw new RangeError(
      `Cannot reorder ${what} rows for rope as ${rows} rows are not whole heads of ${headRows} (an even count)`,
    );
  }
}
