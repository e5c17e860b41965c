/**
 * Decoding of FP4 blocks back to float32, Sluice's own: value = fl(±level·H(scale byte)), then
 * times the outer scale when there is one. For NVFP4 and MXFP4 without an outer scale this is
 * bit-identical to ggml's `dequantize_row_nvfp4` / `dequantize_row_mxfp4` (levels and H are short
 * binary fractions, so the product is exact).
 *
 * @module
 */
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { scaleValue } from "./scale_grid.ts";

/** Options for {@linkcode decodeFp4}. */
export interface Fp4DecodeOptions {
  /** The tensor's outer scale (NVFP4, AMD-FP4). @default 1 */
  outerScale?: number;
}

/**
 * Decodes `n` elements of a format.
 * @throws {RangeError} when `bytes` is shorter than `n` elements need.
 *
 * @example One MXFP4 block
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { FP4_FORMATS } from "./formats.ts";
 * import { decodeFp4 } from "./decode.ts";
 * const block = new Uint8Array(17);
 * block[0] = 127; // scale 2^0
 * block[1] = 0x97; // element 0: code 7 (6), element 16: code 9 (-0.5)
 * const x = decodeFp4(FP4_FORMATS.mxfp4, block, 32);
 * strictEqual(x[0], 6);
 * strictEqual(x[16], -0.5);
 * ```
 */
export function decodeFp4(
  format: Fp4Format,
  bytes: Uint8Array,
  n: number,
  options: Fp4DecodeOptions = {},
): Float32Array {
  const need = fp4Bytes(format, n);
  if (bytes.length < need) {
    throw new RangeError(
      `Cannot decode ${n} ${format.label} elements as the input holds ${bytes.length} bytes: ${need} needed`,
    );
  }
  const outer = Math.fround(options.outerScale ?? 1);
  const { blockSize, subBlockSize, blockBytes, scaleOffset, codeOffset, pairSpan, levels } = format;
  const half = pairSpan / 2;
  const out = new Float32Array(n);
  for (let b = 0; b < n / blockSize; b++) {
    const bo = b * blockBytes;
    for (let i = 0; i < blockSize; i++) {
      const h = scaleValue(format.grid, bytes[bo + scaleOffset + Math.floor(i / subBlockSize)]!) /
        2;
      const unit = Math.floor(i / pairSpan);
      const k = i - unit * pairSpan;
      const byte = bytes[bo + codeOffset + unit * half + (k % half)]!;
      const code = k < half ? byte & 15 : byte >> 4;
      const level = levels[code & 7]!;
      let v = Math.fround((code & 8 && level !== 0 ? -level : level) * h);
      if (outer !== 1) v = Math.fround(v * outer);
      out[b * blockSize + i] = v;
    }
  }
  return out;
}
