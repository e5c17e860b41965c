/**
 * The pre-pass behind per-tensor outer scales: one extra read of the tensors that get one,
 * keeping only each tensor's largest |x|, so the scale is known before the main pass encodes
 * (the `.scale` tensors themselves come after every checkpoint tensor). Memory stays at a few
 * pieces; the cost is reading those tensors twice. Where FP4 encodes run on a GPU, the encode
 * stage finds most outer scales without it (stages/encode/gpu_outer_scale.ts).
 *
 * The scan runs on this thread, each piece's buffer going back to the source right after. On
 * worker threads the copies `postMessage` made stayed in their heaps: `deno task bench gpu 20`'s
 * pre-pass contender (16-core H100 host) had 914–1252 MiB peak RSS, and 406 MiB here, at 0.60
 * against 0.83–0.88 GB/s (the scan no longer runs in parallel). Ad hoc on a 2-core VM, the
 * pre-pass alone over `deno task bench core`'s 2.08 GB model took 2.4–2.9 s and 1051–1183 MiB on
 * workers, 1.4–2.0 s and 108–110 MiB here.
 *
 * @module
 */
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import { fp4Format } from "../gpu/fp4/formats.ts";
import type { PlannedTensor } from "../pipeline/plan.ts";
import type { ModelSource } from "../pipeline/source.ts";
import { finiteAmax } from "./encode/finite.ts";
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
    amax[piece.tensor] = Math.max(amax[piece.tensor]!, finiteAmax(piece.dtype, piece.bytes));
    piece.release?.();
  }
  scaled.forEach((t, i) => {
    const fp4 = t.fp4!;
    fp4.outerScale![0] = fp4OuterScale(fp4Format(fp4.format), amax[i]!, {
      fourOverSix: options.fourOverSix ?? false,
    });
  });
}
