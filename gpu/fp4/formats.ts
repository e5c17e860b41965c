/**
 * The FP4 formats Sluice encodes, as parameter sets of one block encoder: block geometry, the
 * element codebook, the scale grid with its round-to-nearest rule, where bytes go in a block, and
 * how an imatrix weighs the scale search. Every difference between formats is a row of
 * {@link FP4_FORMATS}; the CPU twin and the WGSL kernel read nothing else.
 *
 * Sources: /work/shared/reference/gguf-and-ggml.md §2.4, §3.2, §3.3 (NVFP4, MXFP4);
 * fp4-formats.md §A (ROCmFP4 types 100/101), §B (AMD-FP4 with UE5M3 scales).
 *
 * @module
 */
import { GGML_TYPES, type GgmlTypeInfo } from "../../pipeline/ggml_types.ts";

/** Names of the FP4 formats, lower case as on the command line. */
export type Fp4FormatName =
  | "nvfp4"
  | "mxfp4"
  | "q4_0_rocmfp4"
  | "q4_0_rocmfp4_fast"
  | "amdfp4";

/**
 * Scale byte formats:
 * - `ue4m3`: 4 exponent bits (bias 7), 3 mantissa bits, top bit clear; 0x00 = 0, max 0x7E = 448.
 * - `e8m0`: a power of two, 2^(code−127); 0xFF (NaN) is never written.
 * - `ue5m3`: 5 exponent bits (bias 15), 3 mantissa bits; 0x00 = 0, max 0xFE = 114688.
 */
export type Fp4ScaleGrid = "ue4m3" | "e8m0" | "ue5m3";

/**
 * How `rtn` picks a block's scale code from its amax:
 * - `ggml-ue4m3`: ggml's `ggml_fp32_to_ue4m3(amax/6)`, quirks included (mantissa rounded half up
 *   from one bit, x ≥ 248 → 0x7E, subnormals by `(int)(x·512 + 0.5f)` capped at 7).
 * - `ggml-e8m0`: ggml's `floorf(log2f(amax)) − 2 + 127`, log2f rounding included.
 * - `nearest-down`: the code whose scale is nearest to amax/top, ties to the lower code.
 * - `nearest-even`: the same, ties to the code with an even last bit (ALTO's UE5M3 encoder).
 *
 * The nearest rules clamp to the search range, so a nonzero block never gets scale 0.
 */
export type Fp4RtnRule = "ggml-ue4m3" | "ggml-e8m0" | "nearest-down" | "nearest-even";

/**
 * How an element picks its code for a given scale:
 * - `nearest`: ggml's `best_index_mxfp4`, the first code of least float32 |level·d − x|; that is
 *   the nearest level with ties to the smaller magnitude, except where float32 rounding merges
 *   the distances of a value far beyond the top level (then code 0 wins, as in ggml).
 * - `reciprocal`: ROCmFP4's `a = |x·fl(1/d)|` compared with the level midpoints, ties down.
 */
export type Fp4ElementRule = "nearest" | "reciprocal";

/**
 * How an imatrix weighs the squared error of element j in row r:
 * - `column`: w = imatrix[j] (the form of llama.cpp PR #25153).
 * - `row-sigma`: w = imatrix[j]·sqrt(σ²_r + x²) with σ²_r = Σx²/n over the row, float32 in
 *   element order (ROCmFP4's reference, the same shape as ggml's Q4_0 imatrix path).
 */
export type Fp4Weighting = "column" | "row-sigma";

/** One FP4 format as encoder parameters. */
export interface Fp4Format {
  readonly name: Fp4FormatName;
  /** Name for messages ("NVFP4"). */
  readonly label: string;
  /** The GGUF tensor type, or null for a format Sluice only simulates (AMD-FP4). */
  readonly ggmlType: GgmlTypeInfo | null;
  /** Elements per block. */
  readonly blockSize: number;
  /** Elements sharing one scale byte. */
  readonly subBlockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /** Byte offset of the scale of sub-block 0 in a block; sub-block s uses the next bytes. */
  readonly scaleOffset: number;
  /** Byte offset of the packed codes in a block. */
  readonly codeOffset: number;
  /**
   * Elements per nibble-pairing unit: in each unit of `pairSpan` elements, byte k holds element k
   * in its low nibble and element k + pairSpan/2 in its high nibble.
   */
  readonly pairSpan: number;
  /** Magnitudes of codes 0..7 in half-scale units (E2M1 doubled: 0 1 2 3 4 6 8 12). */
  readonly levels: readonly number[];
  readonly elementRule: Fp4ElementRule;
  readonly grid: Fp4ScaleGrid;
  readonly rtnRule: Fp4RtnRule;
  /** Lowest scale code the searches try (codes below are zero or not usable). */
  readonly minSearchCode: number;
  /** Highest scale code written. */
  readonly maxCode: number;
  readonly weighting: Fp4Weighting;
  /** Whether a per-tensor float32 outer scale applies (written beside the tensor). */
  readonly outerScale: boolean;
}

const E2M1 = [0, 1, 2, 3, 4, 6, 8, 12] as const;
const ROCM = [0, 1, 2, 3, 4, 6, 8, 10] as const;

/** ROCmFP4 with two scales per 32 (type 100); the FAST variant differs only in geometry. */
const ROCMFP4: Fp4Format = {
  name: "q4_0_rocmfp4",
  label: "Q4_0_ROCMFP4",
  ggmlType: GGML_TYPES.q4_0_rocmfp4,
  blockSize: 32,
  subBlockSize: 16,
  blockBytes: 18,
  scaleOffset: 16,
  codeOffset: 0,
  pairSpan: 32,
  levels: ROCM,
  elementRule: "reciprocal",
  grid: "ue4m3",
  rtnRule: "nearest-down",
  minSearchCode: 1,
  maxCode: 0x7e,
  weighting: "row-sigma",
  outerScale: false,
};

/** Every FP4 format by name. */
export const FP4_FORMATS: Readonly<Record<Fp4FormatName, Fp4Format>> = {
  nvfp4: {
    name: "nvfp4",
    label: "NVFP4",
    ggmlType: GGML_TYPES.nvfp4,
    blockSize: 64,
    subBlockSize: 16,
    blockBytes: 36,
    scaleOffset: 0,
    codeOffset: 4,
    pairSpan: 16,
    levels: E2M1,
    elementRule: "nearest",
    grid: "ue4m3",
    rtnRule: "ggml-ue4m3",
    minSearchCode: 1,
    maxCode: 0x7e,
    weighting: "column",
    outerScale: true,
  },
  mxfp4: {
    name: "mxfp4",
    label: "MXFP4",
    ggmlType: GGML_TYPES.mxfp4,
    blockSize: 32,
    subBlockSize: 32,
    blockBytes: 17,
    scaleOffset: 0,
    codeOffset: 1,
    pairSpan: 32,
    levels: E2M1,
    elementRule: "nearest",
    grid: "e8m0",
    rtnRule: "ggml-e8m0",
    minSearchCode: 0,
    maxCode: 0xfe,
    weighting: "column",
    outerScale: false,
  },
  q4_0_rocmfp4: ROCMFP4,
  q4_0_rocmfp4_fast: {
    ...ROCMFP4,
    name: "q4_0_rocmfp4_fast",
    label: "Q4_0_ROCMFP4_FAST",
    ggmlType: GGML_TYPES.q4_0_rocmfp4_fast,
    subBlockSize: 32,
    blockBytes: 17,
  },
  amdfp4: {
    name: "amdfp4",
    label: "AMD-FP4",
    ggmlType: null,
    blockSize: 16,
    subBlockSize: 16,
    blockBytes: 9,
    scaleOffset: 0,
    codeOffset: 1,
    pairSpan: 16,
    levels: E2M1,
    elementRule: "nearest",
    grid: "ue5m3",
    rtnRule: "nearest-even",
    minSearchCode: 1,
    maxCode: 0xfe,
    weighting: "column",
    outerScale: true,
  },
};

/**
 * Looks a format up by name.
 * @throws {RangeError} for a name that is not an FP4 format.
 */
export function fp4Format(name: string): Fp4Format {
  const format = (FP4_FORMATS as Record<string, Fp4Format | undefined>)[name.toLowerCase()];
  if (format === undefined) {
    throw new RangeError(
      `Cannot use FP4 format ${name} as it is not one of: ${Object.keys(FP4_FORMATS).join(", ")}`,
    );
  }
  return format;
}

/**
 * Bytes of `n` elements in a format.
 * @throws {RangeError} when `n` is not a whole number of blocks.
 */
export function fp4Bytes(format: Fp4Format, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n % format.blockSize !== 0) {
    throw new RangeError(
      `Cannot size ${format.label} data as ${n} elements are not whole blocks of ${format.blockSize}`,
    );
  }
  return (n / format.blockSize) * format.blockBytes;
}
