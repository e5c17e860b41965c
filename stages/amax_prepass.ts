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
import { decodeFloats, floatDtypeBytes } from "./encode/float_codecs.ts";
import { planRanges, RowGroupStream } from "./row_group_stream.ts";

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
    const values = new Float32Array(piece.bytes.length / floatDtypeBytes(piece.dtype));
    decodeFloats(piece.dtype, piece.bytes, values);
    let m = amax[piece.tensor]!;
    // Non-finite values are left to the main pass, which names the tensor and element.
    for (let i = 0; i < values.length; i++) {
      const a = Math.abs(values[i]!);
      if (a > m && a < Infinity) m = a;
    }
    amax[piece.tensor] = m;
  }
  scaled.forEach((t, i) => {
    const fp4 = t.fp4!;
    fp4.outerScale![0] = fp4OuterScale(fp4Format(fp4.format), amax[i]!, {
      fourOverSix: options.fourOverSix ?? false,
    });
  });
}
