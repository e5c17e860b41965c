/**
 * The FP4 encoder the converter calls: whole rows of float32 in, a format's bytes out, on the GPU
 * when there is one and on the CPU twin otherwise, with identical bytes either way.
 *
 * For a tensor encoded chunk by chunk, create one {@link Fp4Encoder} per tensor: the options and
 * imatrix are checked once, the pipeline and lookup tables are built once per process and format,
 * and the imatrix is uploaded once. On the GPU every call takes at least ~10 ms (Deno's read-back
 * poll), so pass chunks of several million elements and keep several calls in flight: on an H200,
 * NVFP4 full + imatrix from BF16 runs at about 2.3 GB/s of input with 16 Mi-element chunks (3 or 8
 * in flight) or 4 Mi-element chunks 8 in flight, and 1.7 GB/s with 4 Mi-element chunks 3 in
 * flight (bench/gpu_check.ts). Give BF16 rows to `encodeBf16` as they are: decoding them on the
 * CPU first (about 50 ms per 16 Mi elements) costs more than the whole GPU encode.
 *
 * @module
 */
import { acquireGpu, type DeviceChoice, type GpuContext } from "../device.ts";
import { FP4_GPU_MIN_ELEMENTS, FP4_RTN_ON_CPU_WITH_SOFTWARE_ADAPTER } from "../flags.ts";
import { encodeFp4IntoCpu } from "./encode_cpu.ts";
import { Fp4GpuEncoder } from "./encode_gpu.ts";
import { fp4Bytes, type Fp4Format, fp4Format, type Fp4FormatName } from "./formats.ts";
import {
  type Fp4SearchOptions,
  MODE_RTN,
  type ResolvedFp4Search,
  resolveFp4Search,
} from "./search_options.ts";
import { fp4Weights } from "./weights.ts";
import { checkRopeHeads, permuteRopeRows } from "../rope_rows.ts";

/** Options of {@linkcode encodeFp4Rows} and {@linkcode createFp4Encoder}. */
export interface Fp4EncodeOptions extends Fp4SearchOptions {
  /**
   * Where to run: `auto` uses the GPU when WebGPU has an adapter (small calls, and plain rtn on a
   * software adapter, stay on the CPU; see flags.ts), `gpu` requires it for every call, `cpu`
   * never touches it. Both give the same bytes. @default "auto"
   */
  device?: DeviceChoice;
}

/** Encodes the chunks of one tensor (same format, row length and options). */
export interface Fp4Encoder {
  readonly format: Fp4Format;
  readonly nPerRow: number;
  /** Where calls run: "gpu" (large calls, in `auto`) or "cpu". */
  readonly device: "gpu" | "cpu";
  /**
   * Encodes whole rows. Calls may overlap; each resolves to its own bytes. The imatrix given at
   * creation must not change while the encoder is in use (the GPU keeps a copy). The rows are
   * read before the call returns (uploaded, or encoded on the CPU), so the caller may reuse them
   * then; only an error's reason (NaN or which infinity) looks at them again.
   * @param headRows rows per head when the rows are Q/K rows in Hugging Face's rotate-half order:
   * they are encoded in llama.cpp's rope order (gpu/rope_rows.ts), by the GPU as it reads them or
   * by a copy on the CPU. 0 (the default): as they are.
   * @throws {Fp4InputError} for a NaN or ±inf element, or one the outer scale overflows (its
   * index counts in the encoded order).
   * @throws {RangeError} for rows that are not whole heads.
   */
  encode(rows: Float32Array, headRows?: number): Promise<Uint8Array>;
  /**
   * Encodes whole rows given as bfloat16 bytes (little-endian, two per element, as safetensors
   * stores BF16): the same bytes as `encode` of the decoded float32 rows, and the same errors. On
   * the GPU the bytes are uploaded as they are and widened by the kernel, which halves the upload
   * and skips the CPU decode; prefer it over decoding first.
   * @throws {Fp4InputError} for a NaN or ±inf element, or one the outer scale overflows.
   * @throws {RangeError} for an odd byte count, or rows that are not whole heads.
   */
  encodeBf16(bytes: Uint8Array, headRows?: number): Promise<Uint8Array>;
}

/** Decodes little-endian bfloat16 bytes to float32 (each value is its 16 bits shifted up). */
function decodeBf16Rows(bytes: Uint8Array): Float32Array {
  const n = bytes.length >>> 1;
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  if (bytes.byteOffset % 2 === 0) {
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
  } else {
    for (let i = 0; i < n; i++) bits[i] = (bytes[2 * i]! << 16) | (bytes[2 * i + 1]! << 24);
  }
  return out;
}

class Encoder implements Fp4Encoder {
  readonly format: Fp4Format;
  readonly nPerRow: number;
  readonly device: "gpu" | "cpu";
  readonly #search: ResolvedFp4Search;
  readonly #gpu: Fp4GpuEncoder | null;
  readonly #always: boolean;

  constructor(
    format: Fp4Format,
    nPerRow: number,
    search: ResolvedFp4Search,
    gpu: Fp4GpuEncoder | null,
    always: boolean,
  ) {
    this.format = format;
    this.nPerRow = nPerRow;
    this.device = gpu === null ? "cpu" : "gpu";
    this.#search = search;
    this.#gpu = gpu;
    this.#always = always;
  }

  /** Whether the search weighs each element (row-sigma with an imatrix): weights from the rows. */
  get #perElement(): boolean {
    return this.#search.imatrix !== null && this.format.weighting !== "column";
  }

  encode(rows: Float32Array, headRows = 0): Promise<Uint8Array> {
    try {
      const onGpu = this.#gpu !== null && (this.#always || rows.length >= FP4_GPU_MIN_ELEMENTS);
      if (headRows > 0 && (!onGpu || this.#perElement)) {
        // The CPU twin and per-element weights see the rows in rope order.
        checkRopeHeads(this.format.label, rows.length / this.nPerRow, headRows);
        const bytes = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
        rows = new Float32Array(permuteRopeRows(bytes, 4 * this.nPerRow, headRows).buffer);
        headRows = 0;
      }
      const weights = fp4Weights(this.format, rows, this.nPerRow, this.#search);
      if (onGpu) return this.#gpu!.encode(rows, this.nPerRow, this.#search, weights, headRows);
      const out = new Uint8Array(fp4Bytes(this.format, rows.length));
      encodeFp4IntoCpu(this.format, rows, this.nPerRow, this.#search, weights, out);
      return Promise.resolve(out);
    } catch (e: unknown) {
      return Promise.reject(e);
    }
  }

  encodeBf16(bytes: Uint8Array, headRows = 0): Promise<Uint8Array> {
    try {
      if (bytes.length % 2 !== 0) {
        throw new RangeError(
          `Cannot encode ${this.format.label} from bfloat16 as ${bytes.length} bytes are not whole elements`,
        );
      }
      const elements = bytes.length / 2;
      // Per-element weights (row-sigma with an imatrix) need the float32 rows on the CPU anyway.
      if (
        this.#gpu !== null && !this.#perElement &&
        (this.#always || elements >= FP4_GPU_MIN_ELEMENTS)
      ) {
        if (elements % this.nPerRow !== 0) {
          throw new RangeError(
            `Cannot encode ${this.format.label} as ${elements} elements are not whole rows of ${this.nPerRow}`,
          );
        }
        const weights = fp4Weights(this.format, new Float32Array(0), this.nPerRow, this.#search);
        return this.#gpu.encode({ bf16: bytes }, this.nPerRow, this.#search, weights, headRows);
      }
      return this.encode(decodeBf16Rows(bytes), headRows);
    } catch (e: unknown) {
      return Promise.reject(e);
    }
  }
}

/**
 * Prepares an encoder for the chunks of one tensor: checks the options, picks the device and
 * builds (or reuses) the GPU program.
 *
 * @param format an FP4 format name ("nvfp4", "mxfp4", "q4_0_rocmfp4", "q4_0_rocmfp4_fast",
 * "amdfp4") or format.
 * @param nPerRow elements per row, a multiple of the format's block size.
 * @throws {RangeError} for invalid options (see `resolveFp4Search`).
 * @throws {Error} for `device: "gpu"` without a WebGPU adapter, or when its driver rejects the
 * kernel (`auto` falls back to the CPU twin in both cases).
 *
 * @example Two chunks of one tensor on the CPU
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { createFp4Encoder } from "./encode.ts";
 * const enc = await createFp4Encoder("nvfp4", 64, { mode: "window", device: "cpu" });
 * const [a, b] = await Promise.all([
 *   enc.encode(new Float32Array(64).fill(1)),
 *   enc.encode(new Float32Array(128).fill(-2)),
 * ]);
 * strictEqual(a.length + b.length, 36 * 3);
 * ```
 */
export async function createFp4Encoder(
  format: Fp4FormatName | Fp4Format,
  nPerRow: number,
  options: Fp4EncodeOptions = {},
): Promise<Fp4Encoder> {
  const f = typeof format === "string" ? fp4Format(format) : format;
  const search = resolveFp4Search(f, nPerRow, options);
  const choice = options.device ?? "auto";
  const kernel = (await fp4GpuKernel(f, search, choice))?.kernel ?? null;
  return new Encoder(f, nPerRow, search, kernel, choice === "gpu");
}

/**
 * The GPU and kernel that encodes of `format` with these search options run on for a device
 * choice, or null where they run on the CPU twin (see {@linkcode Fp4EncodeOptions.device}).
 * @throws {Error} for `gpu` without a WebGPU adapter, or when its driver rejects the kernel.
 */
export async function fp4GpuKernel(
  format: Fp4Format,
  search: ResolvedFp4Search,
  choice: DeviceChoice,
): Promise<{ gpu: GpuContext; kernel: Fp4GpuEncoder } | null> {
  const gpu = await acquireGpu(choice);
  if (gpu === null) return null;
  const plainRtn = search.mode === MODE_RTN && !search.fourOverSix;
  if (choice === "auto" && gpu.isFallback && plainRtn && FP4_RTN_ON_CPU_WITH_SOFTWARE_ADAPTER) {
    return null;
  }
  try {
    return { gpu, kernel: await Fp4GpuEncoder.create(gpu, format) };
  } catch (e: unknown) {
    // A driver that rejects the kernel is "no GPU" for auto; the twin gives the same bytes.
    if (choice === "gpu") throw e;
    return null;
  }
}

/**
 * Encodes whole rows of float32 into an FP4 format (one-shot form of {@linkcode createFp4Encoder}).
 *
 * @param format the format name or format.
 * @param rows `rows.length / nPerRow` rows, row-major.
 * @param nPerRow elements per row, a multiple of the format's block size.
 * @returns `fp4Bytes(format, rows.length)` bytes in the format's block layout.
 * @throws {Fp4InputError} for a NaN or ±inf element (or one the outer scale overflows).
 * @throws {RangeError} for sizes or options that do not fit.
 *
 * @example MXFP4 of one block, byte-identical to ggml's quantize_mxfp4
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { encodeFp4Rows } from "./encode.ts";
 * const x = new Float32Array(32);
 * x[0] = 6;
 * x[16] = -0.5;
 * const bytes = await encodeFp4Rows("mxfp4", x, 32, { device: "cpu" });
 * deepStrictEqual(Array.from(bytes.subarray(0, 2)), [0x7f, 0x97]);
 * ```
 */
export async function encodeFp4Rows(
  format: Fp4FormatName | Fp4Format,
  rows: Float32Array,
  nPerRow: number,
  options: Fp4EncodeOptions = {},
): Promise<Uint8Array> {
  const encoder = await createFp4Encoder(format, nPerRow, options);
  return await encoder.encode(rows);
}
