/**
 * One outer-scaled tensor kept on the GPU while it streams in, so that its outer scale costs no
 * second read: each piece of rows is uploaded once and its amax folded on the GPU as it arrives
 * (amax_gpu.ts); after the last piece the caller turns the amax into the outer scale (the same
 * `fp4OuterScale` as the CPU pre-pass) and the pieces are encoded from their GPU copies. The
 * bytes equal those of the pre-pass followed by the usual encode, on either device.
 *
 * @module
 */
import { type Fp4EncodeOptions, fp4GpuKernel } from "./encode.ts";
import { type Bf16Rows, type Fp4GpuEncoder, type GpuRows } from "./encode_gpu.ts";
import { GpuAmax } from "./amax_gpu.ts";
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { Fp4InputError } from "./input_error.ts";
import { resolveFp4Search } from "./search_options.ts";
import { fp4Weights } from "./weights.ts";
import { busyGate } from "../busy_gate.ts";
import type { GpuContext } from "../device.ts";

/** Uploads between device polls (each frees the host staging copies of the uploads before). */
const POLL_BYTES = 64 * 2 ** 20;

/** Knobs for benches (bench/gpu_convert.ts), not callers: the defaults are the measured best. */
export const fp4ResidentTuning = {
  /** GPU bytes of rows encoded in one call (one read-back). */
  callBytes: 32 * 2 ** 20,
};

/** The GPU pieces a tensor's copy needs, or null where its encodes run elsewhere. */
async function gpuFor(format: Fp4Format, nPerRow: number, options: Fp4EncodeOptions) {
  const search = resolveFp4Search(format, nPerRow, { ...options, outerScale: 1 });
  if (search.imatrix !== null && format.weighting !== "column") return null;
  const found = await fp4GpuKernel(format, search, options.device ?? "auto");
  if (found === null) return null;
  try {
    return { ...found, amax: await GpuAmax.create(found.gpu) };
  } catch (e: unknown) {
    // As for the encode kernel: a driver that rejects it is "no GPU" for auto.
    if (options.device === "gpu") throw e;
    return null;
  }
}

/** The rows of one tensor on the GPU, its running amax, and the encoder they will go through. */
export class Fp4ResidentTensor {
  readonly format: Fp4Format;
  readonly nPerRow: number;
  readonly #options: Fp4EncodeOptions;
  readonly #gpu: GpuContext;
  readonly #kernel: Fp4GpuEncoder;
  readonly #amax: GpuAmax;
  #pieces: GpuRows[] = [];
  #bytes = 0;
  /** Bytes uploaded since the last device poll this tensor asked for. */
  #unpolled = 0;

  private constructor(
    format: Fp4Format,
    nPerRow: number,
    options: Fp4EncodeOptions,
    gpu: GpuContext,
    kernel: Fp4GpuEncoder,
    amax: GpuAmax,
  ) {
    this.format = format;
    this.nPerRow = nPerRow;
    this.#options = options;
    this.#gpu = gpu;
    this.#kernel = kernel;
    this.#amax = amax;
  }

  /**
   * A tensor's GPU copy, or null where its encodes would not run on the GPU (the device choice,
   * see `fp4GpuKernel`) or need its rows on the host (per-element imatrix weights).
   * `options.outerScale` is ignored: {@linkcode encode} takes it.
   * @throws {RangeError} for invalid options, as `createFp4Encoder`.
   * @throws {Error} for `device: "gpu"` without a usable GPU.
   */
  static async create(
    format: Fp4Format,
    nPerRow: number,
    options: Fp4EncodeOptions,
  ): Promise<Fp4ResidentTensor | null> {
    const found = await gpuFor(format, nPerRow, options);
    if (found === null) return null;
    return new Fp4ResidentTensor(format, nPerRow, options, found.gpu, found.kernel, found.amax);
  }

  /** Whether {@linkcode create} gives a tensor for these settings, without allocating one. */
  static async supported(
    format: Fp4Format,
    nPerRow: number,
    options: Fp4EncodeOptions,
  ): Promise<boolean> {
    const found = await gpuFor(format, nPerRow, options);
    found?.amax.discard();
    return found !== null;
  }

  /** GPU bytes held by the rows added and not yet encoded. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Uploads whole rows (float32, or bfloat16 bytes in whole words) and folds their amax.
   * @throws {RangeError} for rows that are not whole rows of `nPerRow`.
   */
  add(rows: Float32Array | Bf16Rows): void {
    const uploaded = this.#kernel.upload(rows, this.nPerRow);
    this.#pieces.push(uploaded);
    this.#bytes += uploaded.bytes;
    this.#amax.fold(uploaded);
    // WebGPU frees the host staging copies of uploads at a device poll: without one now and then,
    // a long tensor would pile them up in host memory. A poll blocks until the GPU is idle, so it
    // waits for the gate (gpu/busy_gate.ts).
    this.#unpolled += uploaded.bytes;
    if (this.#unpolled >= POLL_BYTES) {
      this.#unpolled = 0;
      const device = this.#gpu.device;
      busyGate(device).idle().then(() => device.queue.onSubmittedWorkDone()).catch(() => {});
    }
  }

  /** The largest finite |x| of every row added (NaN and ±inf skipped, as `finiteAmax`). */
  amax(): Promise<number> {
    return this.#amax.read();
  }

  /**
   * Encodes the pieces added, in order, one call each, divided by `outerScale`; each GPU copy
   * goes back to the pool once its commands are submitted (before this returns).
   * @throws {RangeError} for an outer scale outside 2^±100.
   */
  encode(outerScale: number): Promise<Uint8Array>[] {
    const search = resolveFp4Search(this.format, this.nPerRow, { ...this.#options, outerScale });
    const weights = fp4Weights(this.format, new Float32Array(0), this.nPerRow, search);
    const pieces = this.#pieces;
    this.#pieces = [];
    this.#bytes = 0;
    // Consecutive pieces share a call up to `callBytes`: one read-back (≥ 10 ms in Deno) each.
    const out: Promise<Uint8Array>[] = [];
    for (let k = 0; k < pieces.length;) {
      const group = [pieces[k++]!];
      let bytes = group[0]!.bytes;
      while (k < pieces.length && bytes + pieces[k]!.bytes <= fp4ResidentTuning.callBytes) {
        bytes += pieces[k]!.bytes;
        group.push(pieces[k++]!);
      }
      const rows: GpuRows = {
        gpu: group.flatMap((g) => g.gpu),
        isBf16: group[0]!.isBf16,
        elements: group.reduce((a, g) => a + g.elements, 0),
        bytes,
      };
      const call = this.#kernel.encode(rows, this.nPerRow, search, weights);
      // Each piece gets its own part of the call's bytes (views, no copy), or the call's error
      // restated from its own first element (so its position in the tensor stays right).
      let at = 0, first = 0;
      for (const g of group) {
        const from = at, skip = first;
        const length = fp4Bytes(this.format, g.elements);
        at += length;
        first += g.elements;
        out.push(call.then(
          (all) => all.subarray(from, from + length),
          (e: unknown) => {
            throw e instanceof Fp4InputError ? e.shifted(skip, this.nPerRow) : e;
          },
        ));
      }
    }
    return out;
  }

  /** Gives the GPU copies back without encoding them. */
  release(): void {
    for (const rows of this.#pieces) this.#kernel.release(rows);
    this.#pieces = [];
    this.#bytes = 0;
    this.#amax.discard();
  }
}
