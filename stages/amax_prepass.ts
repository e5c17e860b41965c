/**
 * The pre-pass behind per-tensor outer scales: one extra read of the tensors that get one,
 * keeping only each tensor's largest |x|, so the scale is known before the main pass encodes
 * (and before the header, which carries the `.scale` tensors, is written). Memory stays at one
 * piece; the cost is reading those tensors twice.
 *
 * @module
 */
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import { fp4Format } from "../gpu/fp4/formats.ts";
import type { PlannedTensor } from "../pipeline/plan.ts";
import type { ModelSource } from "../pipeline/source.ts";
import { decodeFloats, type FloatDtype } from "./encode/float_codecs.ts";
import { planRanges, RowGroupStream } from "./row_group_stream.ts";

/**
 * Largest finite |x| of float bytes. For finite floats the magnitude bits (sign cleared) order
 * like the values, so this is an integer max over raw bits, with no decode. Non-finite values are
 * skipped: the main pass reports them with the tensor's name.
 */
export function finiteAmax(dtype: FloatDtype, bytes: Uint8Array): number {
  if (dtype === "F32") {
    const words = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    const bits = new Int32Array(words.buffer, words.byteOffset, words.length >> 2);
    let m = 0;
    for (let i = 0; i < bits.length; i++) {
      const a = bits[i]! & 0x7fffffff;
      if (a > m && a < 0x7f800000) m = a;
    }
    return new Float32Array(new Int32Array([m]).buffer)[0]!;
  }
  const halves = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const bits = new Uint16Array(halves.buffer, halves.byteOffset, halves.length >> 1);
  const inf = dtype === "BF16" ? 0x7f80 : 0x7c00;
  let m = 0;
  for (let i = 0; i < bits.length; i++) {
    const a = bits[i]! & 0x7fff;
    if (a > m && a < inf) m = a;
  }
  const one = new Uint8Array(2);
  one[0] = m & 0xff;
  one[1] = m >> 8;
  const out = new Float32Array(1);
  decodeFloats(dtype, one, out);
  return out[0]!;
}

/** Options for {@linkcode fillOuterScales}. */
export interface OuterScaleOptions {
  fourOverSix?: boolean;
  chunkSize?: number;
  signal?: AbortSignal;
}

/** Measures each outer-scaled tensor's amax and writes its outer scale into the plan. */
export async function fillOuterScales(
  source: ModelSource,
  tensors: readonly PlannedTensor[],
  options: OuterScaleOptions = {},
): Promise<void> {
  const scaled = tensors.filter((t) => t.fp4?.outerScale && t.origin.kind === "checkpoint");
  if (scaled.length === 0) return;
  const amax = new Float64Array(scaled.length);
  const readOptions = {
    ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  };
  const pieces = source.readRanges(planRanges(scaled), readOptions)
    .pipeThrough(new RowGroupStream(scaled));
  for await (const piece of pieces) {
    amax[piece.tensor] = Math.max(amax[piece.tensor]!, finiteAmax(piece.dtype, piece.bytes));
  }
  scaled.forEach((t, i) => {
    const fp4 = t.fp4!;
    fp4.outerScale![0] = fp4OuterScale(fp4Format(fp4.format), amax[i]!, {
      fourOverSix: options.fourOverSix ?? false,
    });
  });
}
