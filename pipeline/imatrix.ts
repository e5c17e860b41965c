/**
 * Importance matrices (imatrix files) as llama-quantize reads them. Both llama-imatrix formats are
 * read — GGUF (detected by its magic) and the legacy `.dat` — and turned into what llama-quantize
 * hands the quantizers: per GGUF tensor name, the mean of x² over the tokens seen, per input column
 * (and per expert for merged MoE tensors).
 *
 * - GGUF: in_sum2 / count per expert slice; a slice whose count is 0 is all 1.0.
 * - Legacy: stored value / ncall; no division when ncall is 0 or less.
 *
 * Values that end up NaN or infinite are an error here, as they abort llama-quantize.
 *
 * @module
 */
import { ImatrixCursor } from "./imatrix/cursor.ts";
import { ImatrixError, ImatrixSizeError, imatrixSubject } from "./imatrix/errors.ts";
import { readGgufImatrix } from "./imatrix/gguf_imatrix.ts";
import { GGUF_MAGIC } from "./imatrix/gguf_reader.ts";
import { readLegacyImatrix } from "./imatrix/legacy.ts";
import type { RawImatrix, RawImatrixEntry } from "./imatrix/raw.ts";

export { ImatrixError, ImatrixSizeError } from "./imatrix/errors.ts";
export { imatrixMetadata } from "./imatrix/metadata.ts";

/** Tensors for which llama-quantize ignores an imatrix entry of the wrong size. */
const SIZE_EXEMPT = new Set(["token_embd.weight", "per_layer_token_embd.weight"]);

/** One entry, normalized. */
export interface ImatrixEntry {
  /** GGUF tensor name, e.g. `blk.0.ffn_down.weight`. */
  readonly name: string;
  /** mean(x²) per input column; matrix (expert) e occupies [e·ne0, (e+1)·ne0). */
  readonly values: Float32Array;
  /**
   * As stored: GGUF tokens per matrix (their number is the matrix count), or the legacy `[ncall]`.
   */
  readonly counts: readonly number[];
}

/** A loaded imatrix. */
export class Imatrix {
  /** The file name given to {@linkcode readImatrix}, used in messages. */
  readonly file: string;
  readonly format: "gguf" | "legacy";
  /** `imatrix.datasets`, or the legacy trailer's dataset name. */
  readonly datasets: readonly string[];
  /** Chunks the data was collected over. */
  readonly chunkCount: number;
  /** Tokens per chunk; 0 for legacy files. */
  readonly chunkSize: number;
  /** Entries by GGUF tensor name, sorted by name. */
  readonly entries: ReadonlyMap<string, ImatrixEntry>;

  constructor(file: string, raw: RawImatrix, entries: ReadonlyMap<string, ImatrixEntry>) {
    this.file = file;
    this.format = raw.format;
    this.datasets = raw.datasets;
    this.chunkCount = raw.chunkCount;
    this.chunkSize = raw.chunkSize;
    this.entries = entries;
  }

  /**
   * The per-column weights for a tensor with rows of `ne0` values and `nMat` matrices (ne[2],
   * the expert count of merged MoE tensors), as llama-quantize looks them up: by exact name. The
   * array is shared; do not modify it.
   *
   * @returns `ne0 · nMat` values, or null when the file has no entry for the tensor (or, as in
   *   llama-quantize, when a token embedding's entry has the wrong size).
   * @throws {ImatrixSizeError} when the entry's size is not `ne0 · nMat`.
   */
  weightsFor(tensorName: string, ne0: number, nMat = 1): Float32Array | null {
    const entry = this.entries.get(tensorName);
    if (entry === undefined) return null;
    const expected = ne0 * nMat;
    if (entry.values.length === expected) return entry.values;
    if (SIZE_EXEMPT.has(tensorName)) return null;
    throw new ImatrixSizeError(
      this.file,
      tensorName,
      expected,
      entry.values.length,
      `ne[0] ${ne0} × ${nMat} matrices`,
    );
  }
}

function _normalize(raw: RawImatrix, e: RawImatrixEntry): Float32Array {
  const out = new Float32Array(e.sums.length);
  if (raw.format === "gguf") {
    const ne0 = e.sums.length / e.counts.length;
    e.counts.forEach((c, j) => {
      const count = Math.fround(c);
      for (let i = j * ne0; i < (j + 1) * ne0; i++) out[i] = count > 0 ? e.sums[i]! / count : 1;
    });
  } else {
    const ncall = Math.fround(e.counts[0] ?? 0);
    for (let i = 0; i < out.length; i++) out[i] = ncall > 0 ? e.sums[i]! / ncall : e.sums[i]!;
  }
  return out;
}

/**
 * Reads an imatrix file: GGUF when it starts with the GGUF magic, otherwise legacy `.dat`.
 *
 * @param bytes The whole file.
 * @param file Its name, for messages.
 * @throws {ImatrixError} when the file is truncated or malformed, lacks the metadata
 *   llama-quantize requires, or a value is NaN or infinite after normalization.
 */
export function readImatrix(bytes: Uint8Array, file: string): Imatrix {
  const cur = new ImatrixCursor(bytes, file);
  const isGguf = bytes.length >= 4 &&
    new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) === GGUF_MAGIC;
  const raw = isGguf ? readGgufImatrix(cur) : readLegacyImatrix(cur);
  const entries = new Map<string, ImatrixEntry>();
  for (const [name, e] of raw.entries) {
    const values = _normalize(raw, e);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new ImatrixError(
        file,
        name,
        `Cannot read ${imatrixSubject(file, name)} as value ${bad} is not finite: ${values[bad]}`,
      );
    }
    entries.set(name, { name, values, counts: e.counts });
  }
  return new Imatrix(file, raw, entries);
}
