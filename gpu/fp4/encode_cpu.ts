/**
 * The CPU twin of the FP4 encoder: plain TypeScript, the oracle for the WGSL kernel and the
 * fallback when there is no GPU. The algorithm and its float32 rules are in sub_block.ts; this
 * file checks the input, walks the blocks and packs the bytes.
 *
 * @module
 */
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { Fp4InputError, nonFiniteReason } from "./input_error.ts";
import {
  type Fp4SearchOptions,
  type ResolvedFp4Search,
  resolveFp4Search,
} from "./search_options.ts";
import { encodeFp4RtnFast, rtnFastApplies } from "./rtn_fast.ts";
import { Fp4SubBlock } from "./sub_block.ts";
import { fp4Tables } from "./tables.ts";
import { type Fp4Weights, fp4Weights } from "./weights.ts";

/**
 * Throws for the first element the encoders refuse: the first NaN or ±inf, else (with an outer
 * scale) the first |x| whose quotient by the outer scale overflows float32. The GPU shell reports
 * the same element.
 * @throws {Fp4InputError}
 */
export function checkFp4Input(
  format: Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  search: ResolvedFp4Search,
): void {
  const bits = new Uint32Array(rows.buffer, rows.byteOffset, rows.length);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7f800000) === 0x7f800000) {
      throw new Fp4InputError(format.label, i, nPerRow, nonFiniteReason(rows[i]!));
    }
  }
  if (search.maxAbsBits !== 0x7f7fffff) reportOverflow(format, bits, nPerRow, search);
}

/** Throws for the first element too large for the outer scale, if any. */
export function reportOverflow(
  format: Fp4Format,
  bits: Uint32Array,
  nPerRow: number,
  search: ResolvedFp4Search,
): void {
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7fffffff) > search.maxAbsBits) {
      throw new Fp4InputError(
        format.label,
        i,
        nPerRow,
        `overflows float32 when divided by the outer scale ${search.outerScale}`,
      );
    }
  }
}

/**
 * Where each element of a block goes: in each unit of `pairSpan` elements, byte k holds element k
 * in its low nibble and element k + pairSpan/2 in its high nibble.
 */
function placement(format: Fp4Format): { byteOf: Uint8Array; shiftOf: Uint8Array } {
  const byteOf = new Uint8Array(format.blockSize);
  const shiftOf = new Uint8Array(format.blockSize);
  const half = format.pairSpan / 2;
  for (let i = 0; i < format.blockSize; i++) {
    const unit = Math.floor(i / format.pairSpan);
    const k = i - unit * format.pairSpan;
    byteOf[i] = format.codeOffset + unit * half + (k % half);
    shiftOf[i] = k < half ? 0 : 4;
  }
  return { byteOf, shiftOf };
}

/**
 * Encodes whole rows into `out` with resolved options and weights (the core both entry points and
 * the GPU fallback share). Checks the input first. Plain rtn (no Four-over-Six, outer scale 1)
 * takes the fast path of rtn_fast.ts, which writes the same bytes.
 * @throws {Fp4InputError} for an element that cannot be encoded.
 * @throws {RangeError} when `out` is too small.
 */
export function encodeFp4IntoCpu(
  format: Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  search: ResolvedFp4Search,
  weights: Fp4Weights,
  out: Uint8Array,
): void {
  encodeFp4IntoCpuWith(format, rows, nPerRow, search, weights, out, rtnFastApplies(search));
}

/**
 * {@link encodeFp4IntoCpu} choosing the path: `fast` true takes rtn_fast.ts (only valid where
 * `rtnFastApplies(search)`), false the general sub-block encoder (the tests compare the two).
 * @throws {Fp4InputError} for an element that cannot be encoded.
 * @throws {RangeError} when `out` is too small, or `fast` is asked for options it cannot serve.
 */
export function encodeFp4IntoCpuWith(
  format: Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  search: ResolvedFp4Search,
  weights: Fp4Weights,
  out: Uint8Array,
  fast: boolean,
): void {
  const need = fp4Bytes(format, rows.length);
  if (rows.length % nPerRow !== 0) {
    throw new RangeError(
      `Cannot encode ${format.label} as ${rows.length} elements are not whole rows of ${nPerRow}`,
    );
  }
  if (out.length < need) {
    throw new RangeError(
      `Cannot encode ${format.label} into the buffer as it holds ${out.length} bytes: ${need} needed`,
    );
  }
  if (fast && !rtnFastApplies(search)) {
    throw new RangeError(
      `Cannot encode ${format.label} on the fast rtn path as the options are not plain rtn`,
    );
  }
  checkFp4Input(format, rows, nPerRow, search);
  if (fast) {
    encodeFp4RtnFast(format, rows, out);
    return;
  }
  const xBits = new Uint32Array(rows.buffer, rows.byteOffset, rows.length);
  const sub = new Fp4SubBlock(format, fp4Tables(format));
  const codes = new Uint8Array(32);
  const { blockSize, subBlockSize, blockBytes, scaleOffset } = format;
  const { byteOf, shiftOf } = placement(format);
  const blocks = rows.length / blockSize;
  out.fill(0, 0, need);
  for (let b = 0; b < blocks; b++) {
    const bo = b * blockBytes;
    for (let s = 0; s < blockSize / subBlockSize; s++) {
      const start = b * blockSize + s * subBlockSize;
      sub.load(rows, xBits, start, nPerRow, search.invOuter, weights);
      const code = sub.choose(search);
      out[bo + scaleOffset + s] = code;
      sub.codes(code, codes);
      const i0 = s * subBlockSize;
      for (let j = 0; j < subBlockSize; j++) {
        out[bo + byteOf[i0 + j]!]! |= codes[j]! << shiftOf[i0 + j]!;
      }
    }
  }
}

/**
 * Encodes whole rows of float32 into an FP4 format on the CPU.
 *
 * @param format the format (see `FP4_FORMATS`).
 * @param rows `rows.length / nPerRow` rows, row-major.
 * @param nPerRow elements per row, a multiple of the block size.
 * @returns the encoded bytes, `fp4Bytes(format, rows.length)` long.
 * @throws {Fp4InputError} for a NaN or ±inf element (or one the outer scale overflows).
 * @throws {RangeError} for options or sizes that do not fit (see `resolveFp4Search`).
 *
 * @example All-zero block
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { FP4_FORMATS } from "./formats.ts";
 * import { encodeFp4RowsCpu } from "./encode_cpu.ts";
 * deepStrictEqual(encodeFp4RowsCpu(FP4_FORMATS.mxfp4, new Float32Array(32), 32), new Uint8Array(17));
 * ```
 */
export function encodeFp4RowsCpu(
  format: Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  options: Fp4SearchOptions = {},
): Uint8Array {
  const search = resolveFp4Search(format, nPerRow, options);
  const weights = fp4Weights(format, rows, nPerRow, search);
  const out = new Uint8Array(fp4Bytes(format, rows.length));
  encodeFp4IntoCpu(format, rows, nPerRow, search, weights, out);
  return out;
}
