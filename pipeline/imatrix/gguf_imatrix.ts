/**
 * The GGUF imatrix format (llama-imatrix's default), read with the rules of `common_imatrix_load`
 * and `load_imatrix`: tensors `<name>.in_sum2` (F32, raw Σx², ne = {n_cols, n_mat}) and
 * `<name>.counts` (F32, ne = {1, n_mat}) pair up by name, both must exist and be F32, other tensors
 * are ignored; `imatrix.datasets`, `imatrix.chunk_count` and `imatrix.chunk_size` must all be
 * present (llama-quantize stops with "missing imatrix metadata" otherwise), the two counts as u32.
 *
 * @module
 */
import type { ImatrixCursor } from "./cursor.ts";
import { type GgufStructure, type GgufTensorEntry, readGgufStructure } from "./gguf_reader.ts";
import type { RawImatrix, RawImatrixEntry } from "./raw.ts";

const SUMS = ".in_sum2";
const COUNTS = ".counts";
const KEYS = ["imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"] as const;

function _u32(cur: ImatrixCursor, gguf: GgufStructure, key: string): number {
  const kv = gguf.kv.get(key)!;
  if (kv.type !== "u32" || typeof kv.value !== "number") {
    throw cur.fail(`${key} is not a u32`, `type ${kv.type}`);
  }
  return kv.value;
}

/** C's `lround`: to nearest, halves away from zero. */
function _lround(v: number): number {
  return Math.sign(v) * Math.round(Math.abs(v));
}

function _f32s(cur: ImatrixCursor, t: GgufTensorEntry): Float32Array {
  const n = t.dataBytes / 4;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = cur.f32At(t.dataOffset + 4 * i);
  return out;
}

/**
 * Parses a GGUF imatrix whose magic the cursor is at.
 *
 * @throws {ImatrixError} when the file is truncated, malformed, lacks metadata, or an entry lacks
 *   its sums or counts, is not F32, or has sums that do not split into one slice per count.
 */
export function readGgufImatrix(cur: ImatrixCursor): RawImatrix {
  const gguf = readGgufStructure(cur);
  if (gguf.tensors.length === 0) throw cur.fail("it holds no entries", "0 tensors");
  const missing = KEYS.filter((k) => !gguf.kv.has(k));
  if (missing.length > 0) {
    throw cur.fail("imatrix metadata is missing", `no ${missing.join(", ")}`);
  }
  // llama.cpp ignores datasets that are not a string array.
  const ds = gguf.kv.get("imatrix.datasets")!;
  const datasets = ds.itemType === "string" && Array.isArray(ds.value) ? ds.value : [];
  const chunkCount = _u32(cur, gguf, "imatrix.chunk_count");
  const chunkSize = _u32(cur, gguf, "imatrix.chunk_size");

  const pairs = new Map<string, { sums?: GgufTensorEntry; counts?: GgufTensorEntry }>();
  for (const t of gguf.tensors) {
    const suffix = t.name.endsWith(SUMS) ? SUMS : t.name.endsWith(COUNTS) ? COUNTS : null;
    if (suffix === null) continue;
    const name = t.name.slice(0, -suffix.length);
    const pair = pairs.get(name) ?? {};
    if (suffix === SUMS) pair.sums = t;
    else pair.counts = t;
    pairs.set(name, pair);
  }

  const entries = new Map<string, RawImatrixEntry>();
  for (const [name, pair] of [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    cur.entry = name;
    if (pair.sums === undefined || pair.counts === undefined) {
      throw cur.fail(
        "its sums and counts do not pair up",
        `no ${pair.sums === undefined ? name + SUMS : name + COUNTS}`,
      );
    }
    for (const t of [pair.sums, pair.counts]) {
      if (t.type.name !== "F32") throw cur.fail(`${t.name} is not F32`, t.type.name);
    }
    const sums = _f32s(cur, pair.sums);
    const rawCounts = _f32s(cur, pair.counts);
    const bad = rawCounts.findIndex((c) => !Number.isFinite(c));
    if (bad >= 0) throw cur.fail(`count ${bad} is not finite`, `${rawCounts[bad]}`);
    const counts = Array.from(rawCounts, _lround);
    if (counts.length === 0 || sums.length % counts.length !== 0) {
      throw cur.fail(
        "its sums do not split into one slice per count",
        `${sums.length} sums, ${counts.length} counts`,
      );
    }
    entries.set(name, { sums, counts });
  }
  cur.entry = null;
  return { format: "gguf", entries, datasets, chunkCount, chunkSize };
}
