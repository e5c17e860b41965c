/**
 * The FP4 encoder settings of one planned tensor under a run's options, in one place, so that the
 * encode stage and the GPU outer scales (gpu_outer_scale.ts) encode a tensor alike.
 *
 * @module
 */
import type { Fp4EncodeOptions } from "../../gpu/fp4/encode.ts";
import { type Fp4Format, fp4Format } from "../../gpu/fp4/formats.ts";
import type { PlannedTensor } from "../../pipeline/plan.ts";
import type { EncodeOptions } from "../encode_stream.ts";

/** What `createFp4Encoder` takes for one tensor. */
export interface Fp4Settings {
  readonly format: Fp4Format;
  readonly nPerRow: number;
  /** With the tensor's imatrix and its outer scale as the plan holds it now. */
  readonly options: Fp4EncodeOptions;
}

/** The settings of an FP4 tensor (`t.fp4` set). */
export function fp4Settings(t: PlannedTensor, options: EncodeOptions): Fp4Settings {
  const base = fp4Format(t.fp4!.format);
  return {
    format: options.weighting ? { ...base, weighting: options.weighting } : base,
    nPerRow: t.ne[0]!,
    options: {
      mode: options.mode ?? "window",
      window: options.window ?? 12,
      fourOverSix: options.fourOverSix ?? false,
      device: options.device ?? "auto",
      imatrix: options.imatrixFor?.(t) ?? null,
      outerScale: t.fp4!.outerScale?.[0] ?? 1,
    },
  };
}
