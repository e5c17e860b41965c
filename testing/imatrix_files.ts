/**
 * Writes imatrix files in both llama-imatrix formats from raw statistics, the way
 * `IMatrixCollector::save_imatrix` (GGUF) and `save_imatrix_legacy` (`.dat`) do, so that tests can
 * feed `readImatrix` files with known contents.
 *
 * @module
 */
import { layoutGguf } from "../pipeline/gguf_header.ts";
import { type GgufMetadata, gv } from "../pipeline/gguf_metadata.ts";
import { GGML_TYPES } from "../pipeline/ggml_types.ts";

/** What was collected for one weight. */
export interface ImatrixStats {
  /** GGUF tensor name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** Raw Σx² per input column; matrix (expert) e occupies [e·nCols, (e+1)·nCols). */
  readonly sums: ArrayLike<number>;
  /** Tokens seen per matrix; one value for a dense weight. */
  readonly counts: readonly number[];
}

/** A whole collection: what an imatrix file holds. */
export interface ImatrixData {
  readonly entries: readonly ImatrixStats[];
  /** Dataset names (llama-imatrix writes the prompt file). */
  readonly datasets: readonly string[];
  /** Chunks processed. */
  readonly chunkCount: number;
  /** Tokens per chunk (n_ctx / n_parallel). */
  readonly chunkSize: number;
}

function _sorted(entries: readonly ImatrixStats[]): ImatrixStats[] {
  return [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The GGUF imatrix: KVs `general.type` = "imatrix", `imatrix.datasets`, `imatrix.chunk_count`,
 * `imatrix.chunk_size`; per entry (sorted by name) `<name>.in_sum2` F32 {nCols, nMat} with the raw
 * sums and `<name>.counts` F32 {1, nMat}, written like ggml with trailing dimensions of 1 dropped
 * (a dense entry's tensors are 1-D). Entries without values or counts are left out.
 */
export function encodeImatrixGguf(data: ImatrixData): Uint8Array {
  const metadata: GgufMetadata = new Map([
    ["general.type", gv.str("imatrix")],
    ["imatrix.datasets", gv.strings(data.datasets)],
    ["imatrix.chunk_count", gv.u32(data.chunkCount)],
    ["imatrix.chunk_size", gv.u32(data.chunkSize)],
  ]);
  const f32 = GGML_TYPES.f32;
  const tensors = [];
  const payloads: Float32Array[] = [];
  for (const e of _sorted(data.entries)) {
    const nMat = e.counts.length;
    if (e.sums.length === 0 || nMat === 0) continue;
    // ggml writes n_dims without trailing 1s: a dense entry's tensors are 1-D.
    const mats = nMat > 1 ? [nMat] : [];
    tensors.push({ name: `${e.name}.in_sum2`, ne: [e.sums.length / nMat, ...mats], type: f32 });
    tensors.push({ name: `${e.name}.counts`, ne: [1, ...mats], type: f32 });
    payloads.push(Float32Array.from(e.sums), Float32Array.from(e.counts));
  }
  const layout = layoutGguf(metadata, tensors);
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header);
  const view = new DataView(out.buffer);
  payloads.forEach((values, t) => {
    const at = layout.tensorOffsets[t]!;
    values.forEach((v, i) => view.setFloat32(at + 4 * i, v, true));
  });
  return out;
}

/**
 * The legacy `.dat` imatrix: int32 entry count; per entry (sorted by name) int32 name length,
 * name, int32 ncall = ⌈max(counts)/chunkSize⌉, int32 value count and float32 values
 * (Σx²/count)·ncall, or 1·ncall for a matrix with count 0; then int32 chunk count, int32 length and
 * the last dataset name. Entries whose counts are all 0 are left out, as llama-imatrix does.
 * Arithmetic is float32, like llama-imatrix's.
 */
export function encodeImatrixDat(data: ImatrixData): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const i32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    parts.push(b);
  };
  const kept = _sorted(data.entries).filter((e) => e.counts.some((c) => c !== 0));
  i32(kept.length);
  for (const e of kept) {
    const name = enc.encode(e.name);
    i32(name.length);
    parts.push(name);
    const maxCount = Math.max(...e.counts);
    const ncall = Math.floor((maxCount + data.chunkSize - 1) / data.chunkSize);
    i32(ncall);
    i32(e.sums.length);
    const perMat = e.sums.length / e.counts.length;
    const values = new Float32Array(e.sums.length);
    for (let i = 0; i < values.length; i++) {
      let count = Math.fround(e.counts[Math.floor(i / perMat)]!);
      let value = Math.fround(e.sums[i]!);
      if (count === 0) {
        value = 1;
        count = 1;
      }
      values[i] = Math.fround(Math.fround(value / count) * Math.fround(ncall));
    }
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setFloat32(4 * i, v, true));
    parts.push(bytes);
  }
  i32(data.chunkCount);
  const dataset = enc.encode(data.datasets.at(-1) ?? "");
  i32(dataset.length);
  parts.push(dataset);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
