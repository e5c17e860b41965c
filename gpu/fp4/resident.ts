/**
 * One outer-scaled tensor kept on the GPU while it streams in, so that its outer scale costs no
 * second read: each piece of rows is uploaded once; after the last piece the GPU finds the amax
 * and the outer scale (amax_gpu.ts: the same float as `fp4OuterScale` over the pre-pass's amax)
 * and the pieces are encoded from their GPU copies, all submitted at once with no read-back in
 * between. The bytes equal those of the pre-pass followed by the usual encode, on either device.
 *
 * @module
 */
import { type Fp4EncodeOptions, fp4GpuKernel } from "./encode.ts";
import {
  type Bf16Rows,
  type Fp4GpuEncoder,
  type Fp4ScaledBytes,
  type GpuRows,
} from "./encode_gpu.ts";
import { GpuAmax } from "./amax_gpu.ts";
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { Fp4InputError } from "./input_error.ts";
import { fp4OuterDivisor } from "./outer_scale.ts";
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
   * `options.outerScale` is ignored: the GPU finds it (`options.fourOverSix` leaves room for it).
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
    found?.amax.release();
    return found !== null;
  }

  /** GPU bytes held by the rows added and not yet encoded. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Uploads whole rows (float32, or bfloat16 bytes in whole words), to be encoded by
   * {@linkcode encode} with the others.
   * @param headRows as in `Fp4GpuEncoder.upload`: Q/K rows in rotate-half order, read in rope
   * order. Every piece of a tensor gives the same.
   * @throws {RangeError} for rows that are not whole rows of `nPerRow` (or whole heads).
   */
  add(rows: Float32Array | Bf16Rows, headRows = 0): void {
    const uploaded = this.#kernel.upload(rows, this.nPerRow, headRows);
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

  /**
   * Finds the outer scale of every row added and encodes the pieces divided by it, in order, one
   * call per group of pieces; the commands are submitted, and each GPU copy given back to the
   * pool, before this returns. The largest finite |x| (NaN and ±inf skipped, as `finiteAmax`)
   * and the outer scale come back with the first call's bytes.
   * @throws {Error} for a format without outer scales.
   */
  encode(): { pieces: Promise<Uint8Array>[]; scale: Promise<Fp4ScaledBytes> } {
    const divisor = fp4OuterDivisor(this.format, this.#options);
    if (divisor === null) throw new Error(`Cannot find an outer scale for ${this.format.label}`);
    const search = resolveFp4Search(this.format, this.nPerRow, {
      ...this.#options,
      outerScale: 1,
    });
    const weights = fp4Weights(this.format, new Float32Array(0), this.nPerRow, search);
    const pieces = this.#pieces;
    this.#pieces = [];
    this.#bytes = 0;
    const { records, valid } = this.#amax.queue(divisor);
    // Consecutive pieces share a call up to `callBytes`: one read-back (≥ 10 ms in Deno) each.
    const out: Promise<Uint8Array>[] = [];
    let scale: Promise<Fp4ScaledBytes> | null = null;
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
        headRows: group[0]!.headRows,
        elements: group.reduce((a, g) => a + g.elements, 0),
        bytes,
      };
      // Rejected commands are reported as such, ahead of what the encode made of them.
      const call = Promise.all([
        valid,
        this.#kernel.encodeScaled(rows, this.nPerRow, search, weights, records),
      ]).then(([, result]) => result);
      scale ??= call;
      // Each piece gets its own part of the call's bytes (views, no copy), or the call's error
      // restated from its own first element (so its position in the tensor stays right).
      let at = 0, first = 0;
      for (const g of group) {
        const from = at, skip = first;
        const length = fp4Bytes(this.format, g.elements);
        at += length;
        first += g.elements;
        out.push(call.then(
          ({ bytes }) => bytes.subarray(from, from + length),
          (e: unknown) => {
            throw e instanceof Fp4InputError ? e.shifted(skip, this.nPerRow) : e;
          },
        ));
      }
    }
    this.#amax.release(); // every command reading its record is submitted
    // No rows: the empty tensor's amax is 0, and its outer scale 1.
    scale ??= valid.then(() => ({ bytes: new Uint8Array(0), amax: 0, outerScale: 1 }));
    return { pieces: out, scale };
  }

  /** Gives the GPU copies back without encoding them. */
  release(): void {
    for (const rows of this.#pieces) this.#kernel.release(rows);
    this.#pieces = [];
    this.#bytes = 0;
    this.#amax.release();
  }
}
