/**
 * The legacy `.dat` imatrix format (`llama-imatrix --output-format dat`), read with the rules of
 * `common_imatrix_load_legacy`: an int32 entry count (at least 1); per entry an int32 name length,
 * the name, int32 ncall, int32 nval (at least 1) and nval float32 values; then an optional trailer
 * of int32 chunk count, int32 dataset length and the dataset name. A later entry with the same name
 * replaces an earlier one, as in llama.cpp.
 *
 * @module
 */
import type { ImatrixCursor } from "./cursor.ts";
import type { RawImatrix, RawImatrixEntry } from "./raw.ts";

/**
 * Parses a legacy imatrix.
 *
 * @throws {ImatrixError} when the file is truncated or a count is out of range.
 */
export function readLegacyImatrix(cur: ImatrixCursor): RawImatrix {
  const nEntries = cur.i32("the entry count");
  if (nEntries < 1) throw cur.fail("it holds no entries", `entry count ${nEntries}`);
  const entries = new Map<string, RawImatrixEntry>();
  for (let i = 0; i < nEntries; i++) {
    cur.entry = null;
    const len = cur.i32(`the name length of entry ${i}`);
    if (len < 0) throw cur.fail(`entry ${i} has a negative name length`, `${len}`);
    const name = cur.cText(len, `the name of entry ${i}`);
    cur.entry = name;
    const ncall = cur.i32("its call count");
    const nval = cur.i32("its value count");
    if (nval < 1) throw cur.fail("it holds no values", `value count ${nval}`);
    const sums = cur.f32s(nval, `its ${nval} values`);
    entries.set(name, { sums, counts: [ncall] });
  }
  cur.entry = null;
  const sorted = new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  // The trailer is optional and llama.cpp reads what of it is there.
  let chunkCount = 0;
  const datasets: string[] = [];
  if (cur.remaining >= 4) {
    chunkCount = cur.i32("the chunk count");
    if (cur.remaining >= 4) {
      const len = cur.i32("the dataset name length");
      if (len > 0 && len <= cur.remaining) datasets.push(cur.cText(len, "the dataset name"));
    }
  }
  return { format: "legacy", entries: sorted, datasets, chunkCount, chunkSize: 0 };
}
