/**
 * Outer scales without a second read, where FP4 encodes run on the GPU: each outer-scaled
 * tensor's pieces stay on the GPU as they stream through the encode stage (gpu/fp4/resident.ts);
 * once its last piece is in, the GPU finds its amax and outer scale and encodes the pieces from
 * their GPU copies, in one go. The outer scale comes back with the bytes and goes into the plan
 * (and so into its `.scale` tensor, written after every checkpoint tensor). Same bytes as the
 * pre-pass (amax_prepass.ts), which still serves the tensors {@linkcode planGpuOuterScales}
 * leaves out: encodes on the CPU, per-element imatrix weights, or a tensor larger than the VRAM
 * budget.
 *
 * @module
 */
import { acquireGpu } from "../../gpu/device.ts";
import { FP4_GPU_MIN_ELEMENTS } from "../../gpu/flags.ts";
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
  readonly #open = new Map<number, Promise<_Tensor>>();

  /**
   * @param onGpu the tensors planned here ({@linkcode planGpuOuterScales}), each within the VRAM
   * budget; a tensor is held on the GPU only until its last piece is in.
   */
  constructor(
    tensors: readonly PlannedTensor[],
    options: EncodeOptions,
    onGpu: ReadonlySet<number>,
  ) {
    this.#tensors = tensors;
    this.#options = options;
    this.#onGpu = onGpu;
  }

  /** Whether a tensor's pieces come here. */
  has(tensor: number): boolean {
    return this.#onGpu.has(tensor);
  }

  /**
   * Uploads a piece. Its bytes come once its tensor's last piece has been added and encoded.
   * @throws {Error} for a tensor whose encodes no longer run on the GPU.
   */
  async add(piece: TensorPiece): Promise<GpuOuterScalePiece> {
    const t = this.#tensors[piece.tensor]!;
    let opened = this.#open.get(piece.tensor);
    if (opened === undefined) {
      opened = this.#start(t);
      this.#open.set(piece.tensor, opened);
    }
    const state = await opened;
    const headRows = piece.ropeHeadRows ?? 0;
    if (piece.dtype === "BF16") {
      state.resident.add({ bf16: piece.bytes }, headRows);
    } else {
      const values = new Float32Array(piece.bytes.length / (piece.dtype === "F32" ? 4 : 2));
      decodeFloats(piece.dtype, piece.bytes, values);
      state.resident.add(values, headRows);
    }
    const result = Promise.withResolvers<Uint8Array>();
    result.promise.catch(() => {}); // the caller awaits it, unless the stream has failed
    state.pieces.push({
      resolve: (bytes) => result.resolve(bytes),
      reject: (e) => result.reject(e),
    });
    state.received += piece.bytes.length;
    if (state.received === state.total) {
      this.#open.delete(piece.tensor);
      this.#finish(t, state);
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

  /**
   * Submits the tensor's outer scale and every piece's encode; the outer scale goes into the plan
   * as the first call's bytes come back, before any piece's bytes are handed on.
   */
  #finish(t: PlannedTensor, state: _Tensor): void {
    const { resident, pieces } = state;
    try {
      const encoded = resident.encode();
      const scaled = encoded.scale.then(({ outerScale }) => {
        t.fp4!.outerScale![0] = outerScale;
      });
      scaled.catch(() => {}); // each piece reports it, after its own error if it has one
      encoded.pieces.forEach((bytes, k) => {
        pieces[k]!.resolve(bytes.then((b) => scaled.then(() => b)));
      });
    } catch (e: unknown) {
      resident.release();
      for (const p of pieces) p.reject(e);
    } finally {
      state.submitted.resolve();
    }
  }
}
