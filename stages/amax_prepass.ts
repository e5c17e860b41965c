/**
 * The pre-pass behind per-tensor outer scales: one extra read of the tensors that get one,
 * keeping only each tensor's largest |x|, so the scale is known before the main pass encodes
 * (the `.scale` tensors themselves come after every checkpoint tensor). Memory stays at one
 * piece; the cost is reading those tensors twice. Where FP4 encodes run on a GPU, the encode
 * stage finds most outer scales without it (stages/encode/gpu_outer_scale.ts).
 *
 * @module
 */
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import { fp4Format } from "../gpu/fp4/formats.ts";
import type { PlannedTensor } from "../pipeline/plan.ts";
import type { ModelSource } from "../pipeline/source.ts";
import { finiteAmax } from "./encode/finite.ts";
import { EncoderPool } from "./encode/encoder_pool.ts";
import { planRanges, RowGroupStream } from "./row_group_stream.ts";

/** Pieces smaller than this are scanned here rather than copied to a worker. */
const POOL_MIN_BYTES = 256 << 10;
/** Scans in flight on workers. */
const IN_FLIGHT = 8;

/** Options for {@linkcode fillOuterScales}. */
export interface OuterScaleOptions {
  fourOverSix?: boolean;
  chunkSize?: number;
  signal?: AbortSignal;
  /** Workers started by the caller (who closes them); otherwise started here when needed. */
  pool?: EncoderPool;
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
  // Big pieces are scanned on worker threads, a few at a time, while the next ones are read.
  // Started only when a piece is big enough to need it.
  const workers: { pool: EncoderPool | null } = { pool: null };
  const inFlight: Promise<void>[] = [];
  try {
    for await (const piece of pieces) {
      const { tensor, dtype, bytes } = piece;
      if (bytes.length < POOL_MIN_BYTES) {
        amax[tensor] = Math.max(amax[tensor]!, finiteAmax(dtype, bytes));
        continue;
      }
      inFlight.push(
        (options.pool ?? (workers.pool ??= new EncoderPool())).amax(dtype, bytes).then((m) => {
          amax[tensor] = Math.max(amax[tensor]!, m);
        }),
      );
      if (inFlight.length >= IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  } finally {
    workers.pool?.close();
  }
  scaled.forEach((t, i) => {
    const fp4 = t.fp4!;
    fp4.outerScale![0] = fp4OuterScale(fp4Format(fp4.format), amax[i]!, {
      fourOverSix: options.fourOverSix ?? false,
    });
  });
}
