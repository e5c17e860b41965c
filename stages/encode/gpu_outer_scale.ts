/**
 * Outer scales without a second read, where FP4 encodes run on the GPU: each outer-scaled
 * tensor's pieces stay on the GPU as they stream through the encode stage (gpu/fp4/resident.ts);
 * once its last piece is in, its amax gives the outer scale, which goes into the plan (and so
 * into its `.scale` tensor, written after every checkpoint tensor), and the pieces are encoded
 * from their GPU copies. Same bytes as the pre-pass (amax_prepass.ts), which still serves the
 * tensors {@linkcode planGpuOuterScales} leaves out: encodes on the CPU, per-element imatrix
 * weights, or a tensor larger than the VRAM budget.
 *
 * @module
 */
import { acquireGpu } from "../../gpu/device.ts";
import { FP4_GPU_MIN_ELEMENTS } from "../../gpu/flags.ts";
import { fp4Format } from "../../gpu/fp4/formats.ts";
import { fp4OuterScale } from "../../gpu/fp4/outer_scale.ts";
import { Fp4ResidentTensor } from "../../gpu/fp4/resident.ts";
import { type PlannedTensor, tensorElements } from "../../pipeline/plan.ts";
import type { EncodeOptions } from "../encode_stream.ts";
import type { TensorPiece } from "../tensor_piece.ts";
import { decodeFloats } from "./float_codecs.ts";
import { fp4Settings } from "./fp4_settings.ts";

/** VRAM for tensors waiting for their last piece, on a hardware GPU (a few big tensors). */
export const GPU_OUTER_SCALE_BYTES = 2 ** 31;

/** Bytes a tensor takes on the GPU: BF16 as it is, other dtypes as float32. */
function gpuBytes(t: PlannedTensor): number {
  if (t.origin.kind !== "checkpoint") return 0;
  const { entry } = t.origin;
  return entry.dtype === "BF16" ? entry.end - entry.start : 4 * tensorElements(t);
}

/**
 * The tensors (plan indices) whose outer scale the encode stage finds on the GPU; the pre-pass
 * must fill in the others. Empty without a budget: by default 2 GiB on a hardware GPU and none on
 * a software adapter, whose "VRAM" is host memory.
 */
export async function planGpuOuterScales(
  tensors: readonly PlannedTensor[],
  options: EncodeOptions,
): Promise<Set<number>> {
  const onGpu = new Set<number>();
  const wanted = tensors.some((t) => t.fp4?.outerScale && t.origin.kind === "checkpoint");
  if (!wanted || options.device === "cpu") return onGpu;
  const gpu = await acquireGpu(options.device ?? "auto");
  const budget = options.gpuOuterScaleBytes ??
    (gpu === null || gpu.isFallback ? 0 : GPU_OUTER_SCALE_BYTES);
  for (const [i, t] of tensors.entries()) {
    if (!t.fp4?.outerScale || t.origin.kind !== "checkpoint" || gpuBytes(t) > budget) continue;
    // `auto` keeps small encodes on the CPU (flags.ts): so does their outer scale.
    if (options.device !== "gpu" && tensorElements(t) < FP4_GPU_MIN_ELEMENTS) continue;
    const { format, nPerRow, options: settings } = fp4Settings(t, options);
    if (await Fp4ResidentTensor.supported(format, nPerRow, settings)) onGpu.add(i);
  }
  return onGpu;
}

/** A piece handed to {@linkcode GpuOuterScales.add}. */
export interface GpuOuterScalePiece {
  /** Its encoded bytes, once its tensor's last piece is in and the encode has run. */
  readonly bytes: Promise<Uint8Array>;
  /** Settles when its encode is submitted to the GPU (the wait for later pieces is over). */
  readonly submitted: Promise<void>;
}

interface _Pending {
  resolve(bytes: Promise<Uint8Array>): void;
  reject(e: unknown): void;
}

interface _Tensor {
  readonly resident: Fp4ResidentTensor;
  readonly total: number;
  received: number;
  readonly pieces: _Pending[];
  readonly submitted: PromiseWithResolvers<void>;
}

/** The GPU side of the outer scales of one run's encode stage. */
export class GpuOuterScales {
  readonly #tensors: readonly PlannedTensor[];
  readonly #options: EncodeOptions;
  readonly #onGpu: ReadonlySet<number>;
  readonly #budget: number;
  readonly #open = new Map<number, Promise<_Tensor>>();
  /** Complete tensors whose GPU copies are still held, oldest first. */
  readonly #complete: Promise<void>[] = [];
  /** Bytes held on the GPU by tensors not yet encoded. */
  #held = 0;

  /**
   * @param onGpu the tensors planned here ({@linkcode planGpuOuterScales}).
   * @param budget GPU bytes held at most (a tensor in flight may wait for older ones).
   */
  constructor(
    tensors: readonly PlannedTensor[],
    options: EncodeOptions,
    onGpu: ReadonlySet<number>,
    budget: number = options.gpuOuterScaleBytes ?? GPU_OUTER_SCALE_BYTES,
  ) {
    this.#tensors = tensors;
    this.#options = options;
    this.#onGpu = onGpu;
    this.#budget = budget;
  }

  /** Whether a tensor's pieces come here. */
  has(tensor: number): boolean {
    return this.#onGpu.has(tensor);
  }

  /**
   * Uploads a piece (after older tensors have made room within the budget) and folds its amax.
   * Its bytes come once its tensor's last piece has been added.
   * @throws {Error} for a tensor whose encodes no longer run on the GPU.
   */
  async add(piece: TensorPiece): Promise<GpuOuterScalePiece> {
    const t = this.#tensors[piece.tensor]!;
    const size = piece.dtype === "F16" ? 2 * piece.bytes.length : piece.bytes.length;
    while (this.#held + size > this.#budget && this.#complete.length > 0) {
      await this.#complete.shift();
    }
    let opened = this.#open.get(piece.tensor);
    if (opened === undefined) {
      opened = this.#start(t);
      this.#open.set(piece.tensor, opened);
    }
    const state = await opened;
    const before = state.resident.bytes;
    if (piece.dtype === "BF16") {
      state.resident.add({ bf16: piece.bytes });
    } else {
      const values = new Float32Array(piece.bytes.length / (piece.dtype === "F32" ? 4 : 2));
      decodeFloats(piece.dtype, piece.bytes, values);
      state.resident.add(values);
    }
    this.#held += state.resident.bytes - before;
    const result = Promise.withResolvers<Uint8Array>();
    result.promise.catch(() => {}); // the caller awaits it, unless the stream has failed
    state.pieces.push({
      resolve: (bytes) => result.resolve(bytes),
      reject: (e) => result.reject(e),
    });
    state.received += piece.bytes.length;
    if (state.received === state.total) {
      this.#open.delete(piece.tensor);
      this.#complete.push(this.#finish(t, state));
    }
    return { bytes: result.promise, submitted: state.submitted.promise };
  }

  /** Gives back the GPU copies of tensors still open (the stream failed or was cancelled). */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    for (const state of await Promise.allSettled(open)) {
      if (state.status !== "fulfilled") continue;
      state.value.resident.release();
      const e = new Error("Cannot encode as the stream stopped before the tensor's last piece");
      for (const p of state.value.pieces) p.reject(e);
      state.value.submitted.resolve();
    }
  }

  async #start(t: PlannedTensor): Promise<_Tensor> {
    const { format, nPerRow, options } = fp4Settings(t, this.#options);
    const resident = await Fp4ResidentTensor.create(format, nPerRow, options);
    if (resident === null) {
      throw new Error(`Cannot keep tensor ${t.name} on the GPU as its encodes do not run there`);
    }
    const total = t.origin.kind === "checkpoint" ? t.origin.entry.end - t.origin.entry.start : 0;
    const submitted = Promise.withResolvers<void>();
    submitted.promise.catch(() => {});
    return { resident, total, received: 0, pieces: [], submitted };
  }

  /** The outer scale from the amax, into the plan; then every piece's encode. */
  async #finish(t: PlannedTensor, state: _Tensor): Promise<void> {
    const { resident, pieces } = state;
    try {
      const amax = await resident.amax();
      const fp4 = t.fp4!;
      fp4.outerScale![0] = fp4OuterScale(fp4Format(fp4.format), amax, {
        fourOverSix: this.#options.fourOverSix ?? false,
      });
      const held = resident.bytes;
      const encoded = resident.encode(fp4.outerScale![0]!);
      this.#held -= held;
      encoded.forEach((bytes, k) => pieces[k]!.resolve(bytes));
    } catch (e: unknown) {
      this.#held -= resident.bytes;
      resident.release();
      for (const p of pieces) p.reject(e);
    } finally {
      state.submitted.resolve();
    }
  }
}
