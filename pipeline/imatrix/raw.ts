/**
 * An imatrix file as stored, before llama-quantize's normalization: per entry the sums and the
 * counts, and the file's metadata. Both formats parse into this (like llama.cpp's
 * `common_imatrix`).
 *
 * @module
 */

/** One entry as stored. */
export interface RawImatrixEntry {
  /**
   * GGUF: raw Σx², `nMat` slices of ne[0] values. Legacy: (Σx²/count)·ncall, as written.
   */
  readonly sums: Float32Array;
  /** GGUF: tokens per matrix (rounded like `lround`). Legacy: one value, ncall. */
  readonly counts: readonly number[];
}

/** A parsed imatrix file. */
export interface RawImatrix {
  readonly format: "gguf" | "legacy";
  /** By GGUF tensor name, sorted by name (llama.cpp keeps them in a `std::map`). */
  readonly entries: ReadonlyMap<string, RawImatrixEntry>;
  readonly datasets: readonly string[];
  readonly chunkCount: number;
  /** Tokens per chunk (n_ctx / n_parallel); 0 for legacy files, which do not record it. */
  readonly chunkSize: number;
}
