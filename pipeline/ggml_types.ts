/**
 * ggml tensor types that Sluice reads or writes: ids, block sizes and bytes per block, from
 * `ggml/include/ggml.h` and `ggml_type_size` of llama.cpp v0.5.0 (and the ROCmFPX fork for 100/101).
 * Row and tensor sizes are derived here, never restated elsewhere.
 *
 * @module
 */

/** One ggml type's identity and block geometry. */
export interface GgmlTypeInfo {
  /** The `enum ggml_type` value written in GGUF tensor infos. */
  readonly id: number;
  /** ggml's name for the type. */
  readonly name: string;
  /** Elements per block along ne[0]. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

function type(id: number, name: string, blockSize: number, typeSize: number): GgmlTypeInfo {
  return { id, name, blockSize, typeSize };
}

/** The types Sluice knows, by lower-case name. */
export const GGML_TYPES = {
  f32: type(0, "F32", 1, 4),
  f16: type(1, "F16", 1, 2),
  q4_0: type(2, "Q4_0", 32, 18),
  q8_0: type(8, "Q8_0", 32, 34),
  q4_k: type(12, "Q4_K", 256, 144),
  q6_k: type(14, "Q6_K", 256, 210),
  bf16: type(30, "BF16", 1, 2),
  mxfp4: type(39, "MXFP4", 32, 17),
  nvfp4: type(40, "NVFP4", 64, 36),
  q4_0_rocmfp4: type(100, "Q4_0_ROCMFP4", 32, 18),
  q4_0_rocmfp4_fast: type(101, "Q4_0_ROCMFP4_FAST", 32, 17),
} as const satisfies Record<string, GgmlTypeInfo>;

/** A lower-case ggml type name that Sluice knows. */
export type GgmlTypeName = keyof typeof GGML_TYPES;

/** Looks a type up by its GGUF id, or returns null for a type Sluice does not know. */
export function ggmlTypeById(id: number): GgmlTypeInfo | null {
  for (const info of Object.values(GGML_TYPES)) if (info.id === id) return info;
  return null;
}

/**
 * Bytes of one row of `n` elements.
 * @throws {RangeError} when `n` is not a multiple of the block size.
 */
export function rowBytes(info: GgmlTypeInfo, n: number): number {
  if (n % info.blockSize !== 0) {
    throw new RangeError(
      `Cannot size a ${info.name} row as its length ${n} is not a multiple of ${info.blockSize}`,
    );
  }
  return (n / info.blockSize) * info.typeSize;
}

/** Bytes of a tensor with dims `ne` (ne[0] innermost). */
export function tensorBytes(info: GgmlTypeInfo, ne: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return rowBytes(info, ne[0] ?? 1) * rows;
}

/** `llama_ftype` values written as `general.file_type`, by the output type of the 2-D weights. */
export const LLAMA_FTYPE = {
  f32: 0,
  f16: 1,
  q8_0: 7,
  bf16: 32,
  mxfp4_moe: 38,
  nvfp4: 39,
} as const;
