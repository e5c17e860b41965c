/**
 * The WebGPU shell of the FP4 encoder: runs encode.wgsl over whole rows and returns the bytes the
 * CPU twin (encode_cpu.ts) would return, or throws the same {@link Fp4InputError}.
 *
 * Program contract: one pipeline per device, named `fp4_encode`, with nothing baked into the WGSL:
 * the format (geometry, codebook, element rule), search mode, window, weights kind and outer scale
 * are uniforms and the format's lookup tables a storage buffer (built once per device and format),
 * so one compilation serves every call. Bindings and dispatch are assembled in `encode` only.
 *
 * One invocation encodes one sub-block and ORs its bytes into the output words, which are cleared
 * first. Each call uploads its rows with `queue.writeBuffer`, dispatches, copies the packed words
 * and the two error flags into one staging buffer and maps it once (Deno's `mapAsync` costs ≥ 10 ms, so a
 * call should carry millions of elements). Calls may overlap: start the next before awaiting the
 * previous and the GPU works on both. Buffers come from a pool and return to it after submission.
 *
 * @module
 */
import kernel from "./encode.wgsl" with { type: "text" };
import { BufferPool } from "../buffer_pool.ts";
import type { GpuContext } from "../device.ts";
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { Fp4InputError, nonFiniteReason } from "./input_error.ts";
import type { ResolvedFp4Search } from "./search_options.ts";
import { fp4Tables, packFp4Tables } from "./tables.ts";
import { type Fp4Weights, WEIGHTS_COLUMN, WEIGHTS_ELEMENT, WEIGHTS_NONE } from "./weights.ts";

/** Invocations per workgroup (the kernel's @workgroup_size). */
const WORKGROUP = 64;
/** Bytes of the uniform block: 21 u32 (padded to 24), then the 8 levels as two vec4. */
const PARAMS_BYTES = 128;
/** Flag value meaning "no element". */
const NONE = 0xffffffff;
/** The program name; its cache key has no other part, as formats are uniforms. */
const PROGRAM = "fp4_encode";

const STORAGE_IN = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const STORAGE_OUT = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const FLAGS = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const STAGING = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;

/** Per device: the pipeline, a buffer pool and each format's tables. */
interface DeviceState {
  readonly pipeline: GPUComputePipeline;
  readonly pool: BufferPool;
  readonly tables: Map<string, GPUBuffer>;
  /** A stand-in bound when there are no weights. */
  readonly noWeights: GPUBuffer;
}

const states = new WeakMap<GPUDevice, Promise<DeviceState>>();

/**
 * The kernel's state on a device, built on first use.
 * @throws {Error} with the compiler's message when the kernel does not build.
 */
function stateOf(device: GPUDevice): Promise<DeviceState> {
  let state = states.get(device);
  if (state === undefined) {
    state = build(device);
    states.set(device, state);
    state.catch(() => states.delete(device));
  }
  return state;
}

async function build(device: GPUDevice): Promise<DeviceState> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: kernel, label: PROGRAM });
  const pipeline = device.createComputePipeline({
    label: PROGRAM,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const error = await device.popErrorScope();
  if (error !== null) {
    throw new Error(
      `Cannot build the GPU program ${PROGRAM} as WebGPU rejected it: ${error.message}`,
    );
  }
  return {
    pipeline,
    pool: new BufferPool(device),
    tables: new Map(),
    noWeights: device.createBuffer({ size: 16, usage: STORAGE_IN, label: `${PROGRAM}_no_weights` }),
  };
}

function tablesOf(device: GPUDevice, state: DeviceState, format: Fp4Format): GPUBuffer {
  let buffer = state.tables.get(format.name);
  if (buffer === undefined) {
    const packed = packFp4Tables(fp4Tables(format));
    buffer = device.createBuffer({
      size: packed.byteLength,
      usage: STORAGE_IN,
      label: `${PROGRAM}_${format.name}_tables`,
    });
    device.queue.writeBuffer(buffer, 0, packed);
    state.tables.set(format.name, buffer);
  }
  return buffer;
}

/** The uniform block of one dispatch. */
function paramsOf(
  format: Fp4Format,
  search: ResolvedFp4Search,
  weights: Fp4Weights,
  blocks: number,
  nPerRow: number,
  strideY: number,
  words: number,
  inputKind: number,
): Uint32Array<ArrayBuffer> {
  const u = new Uint32Array(PARAMS_BYTES / 4);
  const f = new Float32Array(u.buffer);
  u.set([blocks, nPerRow, search.mode, search.window, search.fourOverSix ? 1 : 0, weights.kind]);
  f[6] = search.invOuter;
  u.set([search.maxAbsBits, 0, strideY, words, format.blockSize, format.subBlockSize], 7);
  u.set([format.blockBytes, format.scaleOffset, format.codeOffset, format.pairSpan], 13);
  u.set([format.minSearchCode, format.maxCode, format.elementRule === "reciprocal" ? 1 : 0], 17);
  u[20] = inputKind;
  f.set(format.levels, 24);
  return u;
}

/**
 * Rows given as bfloat16 bytes (little-endian, two per element, as safetensors stores BF16). The
 * kernel widens each to float32 (the 16 bits shifted up, exactly what a CPU decode does), so the
 * bytes equal those of the decoded float32 rows while only half as many bytes are uploaded.
 */
export interface Bf16Rows {
  readonly bf16: Uint8Array;
}

/** Input kinds as the kernel numbers them. */
const INPUT_F32 = 0;
const INPUT_BF16 = 1;

/** The float32 value of element `i` of the input. */
function elementOf(rows: Float32Array | Bf16Rows, i: number): number {
  if (rows instanceof Float32Array) return rows[i]!;
  const bits = ((rows.bf16[2 * i]! << 16) | (rows.bf16[2 * i + 1]! << 24)) >>> 0;
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

/**
 * Knobs of the shell, for benches (bench/gpu_prof.ts) rather than callers: the defaults are the
 * measured best on an H200.
 */
export const fp4GpuTuning = {
  /**
   * Input bytes per dispatch and submission: a larger call is split into pieces of this size (in
   * whole rows) so that the GPU starts on the first while the next uploads.
   */
  pieceBytes: 32 * 2 ** 20,
  /** How a single piece is read back: "slice" copies the mapped range once, "set" into a new array. */
  readback: "slice" as "slice" | "set",
  /** Accumulate fp4GpuTimings. */
  profile: false,
};

/** Time spent per phase over all calls while `fp4GpuTuning.profile` is on (milliseconds). */
export const fp4GpuTimings = {
  calls: 0,
  /** Synchronous part of encode (uploads, encoding, submission). */
  syncMs: 0,
  /** Of which queue.writeBuffer of the rows. */
  uploadMs: 0,
  /** From the end of the synchronous part until validation resolved. */
  validationMs: 0,
  /** From the end of the synchronous part until every read-back was mapped. */
  mapWaitMs: 0,
  /** Copying the mapped bytes out and unmapping. */
  readMs: 0,
};

/** One dispatch's worth of rows and its buffers. */
interface Piece {
  readonly firstElement: number;
  readonly bytes: number;
  readonly paddedBytes: number;
  readonly staging: GPUBuffer;
}

/** Runs the FP4 kernel of one format on one GPU. */
export class Fp4GpuEncoder {
  readonly #gpu: GpuContext;
  readonly #format: Fp4Format;
  readonly #state: DeviceState;
  readonly #tables: GPUBuffer;
  /** Column weights uploaded once per imatrix array. */
  readonly #columnWeights = new WeakMap<Float32Array, GPUBuffer>();

  private constructor(gpu: GpuContext, format: Fp4Format, state: DeviceState) {
    this.#gpu = gpu;
    this.#format = format;
    this.#state = state;
    this.#tables = tablesOf(gpu.device, state, format);
  }

  /**
   * An encoder for one format on one GPU; the pipeline is built once per device.
   * @throws {Error} when the kernel does not build on this device.
   */
  static async create(gpu: GpuContext, format: Fp4Format): Promise<Fp4GpuEncoder> {
    return new Fp4GpuEncoder(gpu, format, await stateOf(gpu.device));
  }

  /** Whole-row element count of one dispatch: the tuning's piece size within the buffer limits. */
  #piece(nPerRow: number, elementBytes: number): number {
    const limits = this.#gpu.limits;
    const bytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rows = Math.floor(bytes / 4 / nPerRow);
    if (rows < 1) {
      throw new RangeError(
        `Cannot encode ${this.#format.label} on the GPU as one row of ${nPerRow} exceeds its buffer limit: ${bytes} bytes`,
      );
    }
    const wanted = Math.max(1, Math.floor(fp4GpuTuning.pieceBytes / elementBytes / nPerRow));
    return Math.min(rows, wanted) * nPerRow;
  }

  #weightsBuffer(weights: Fp4Weights, first: number, count: number): GPUBuffer | null {
    if (weights.kind === WEIGHTS_NONE) return null;
    const device = this.#gpu.device;
    if (weights.kind === WEIGHTS_COLUMN) {
      let buffer = this.#columnWeights.get(weights.data);
      if (buffer === undefined) {
        buffer = device.createBuffer({
          size: Math.max(16, weights.data.byteLength),
          usage: STORAGE_IN,
          label: `${PROGRAM}_imatrix`,
        });
        device.queue.writeBuffer(buffer, 0, weights.data as Float32Array<ArrayBuffer>);
        this.#columnWeights.set(weights.data, buffer);
      }
      return buffer;
    }
    return this.#upload(weights.data.subarray(first, first + count), "weights");
  }

  #upload(data: Float32Array | Uint8Array, what: string): GPUBuffer {
    const buffer = this.#state.pool.acquire(data.byteLength, STORAGE_IN, `fp4_${what}`);
    this.#gpu.device.queue.writeBuffer(buffer, 0, data as Uint8Array<ArrayBuffer>);
    return buffer;
  }

  /**
   * Encodes whole rows, float32 or bfloat16; same bytes as `encodeFp4IntoCpu` with the same
   * arguments (bfloat16 rows decoded to float32 first).
   * @throws {Fp4InputError} for a NaN or ±inf element, or one the outer scale overflows.
   */
  async encode(
    rows: Float32Array | Bf16Rows,
    nPerRow: number,
    search: ResolvedFp4Search,
    weights: Fp4Weights,
  ): Promise<Uint8Array> {
    const format = this.#format;
    const bf16 = rows instanceof Float32Array ? null : rows.bf16;
    const length = bf16 === null ? (rows as Float32Array).length : bf16.length / 2;
    const total = fp4Bytes(format, length);
    if (!Number.isInteger(length) || length % nPerRow !== 0) {
      throw new RangeError(
        `Cannot encode ${format.label} as ${length} elements are not whole rows of ${nPerRow}`,
      );
    }
    const elementBytes = bf16 === null ? 4 : 2;
    const profile = fp4GpuTuning.profile;
    const t0 = profile ? performance.now() : 0;
    const device = this.#gpu.device;
    const pool = this.#state.pool;
    const step = this.#piece(nPerRow, elementBytes);
    const pieces: Piece[] = [];
    device.pushErrorScope("validation");
    let validation: Promise<GPUError | null>;
    try {
      for (let first = 0; first < length; first += step) {
        const elements = Math.min(step, length - first);
        const blocks = elements / format.blockSize;
        const threads = blocks * (format.blockSize / format.subBlockSize);
        const paddedBytes = Math.ceil((blocks * format.blockBytes) / 4) * 4;
        const workgroups = Math.ceil(threads / WORKGROUP);
        const maxX = this.#gpu.limits.maxComputeWorkgroupsPerDimension;
        const groupsX = Math.min(workgroups, maxX);
        const groupsY = Math.ceil(workgroups / groupsX);

        const params = paramsOf(
          format,
          search,
          weights,
          blocks,
          nPerRow,
          groupsX * WORKGROUP,
          paddedBytes / 4,
          bf16 === null ? INPUT_F32 : INPUT_BF16,
        );
        const uniform = pool.acquire(PARAMS_BYTES, UNIFORM, "fp4_params");
        device.queue.writeBuffer(uniform, 0, params);

        const tu = profile ? performance.now() : 0;
        const input = bf16 === null
          ? this.#upload((rows as Float32Array).subarray(first, first + elements), "rows")
          : this.#upload(bf16.subarray(first * 2, (first + elements) * 2), "rows");
        if (profile) fp4GpuTimings.uploadMs += performance.now() - tu;
        const weightBuffer = this.#weightsBuffer(weights, first, elements);
        const output = pool.acquire(paddedBytes, STORAGE_OUT, "fp4_output");
        const flags = pool.acquire(8, FLAGS, "fp4_flags");
        device.queue.writeBuffer(flags, 0, new Uint32Array([NONE, NONE]));
        const staging = pool.acquire(paddedBytes + 8, STAGING, "fp4_staging");

        const bindGroup = device.createBindGroup({
          label: PROGRAM,
          layout: this.#state.pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: uniform, size: PARAMS_BYTES } },
            { binding: 1, resource: { buffer: input, size: elements * elementBytes } },
            { binding: 2, resource: { buffer: weightBuffer ?? this.#state.noWeights } },
            { binding: 3, resource: { buffer: this.#tables } },
            { binding: 4, resource: { buffer: output, size: paddedBytes } },
            { binding: 5, resource: { buffer: flags, size: 8 } },
          ],
        });
        const encoder = device.createCommandEncoder({ label: PROGRAM });
        encoder.clearBuffer(output, 0, paddedBytes);
        const pass = encoder.beginComputePass({ label: PROGRAM });
        pass.setPipeline(this.#state.pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(groupsX, groupsY);
        pass.end();
        encoder.copyBufferToBuffer(output, 0, staging, 0, paddedBytes);
        encoder.copyBufferToBuffer(flags, 0, staging, paddedBytes, 8);
        // One submission per piece: the GPU starts on it while the next one uploads.
        device.queue.submit([encoder.finish()]);
        // Submitted: the queue orders any later write to these after this piece's commands.
        pool.release(uniform);
        pool.release(input);
        pool.release(output);
        pool.release(flags);
        if (weights.kind === WEIGHTS_ELEMENT && weightBuffer !== null) pool.release(weightBuffer);
        pieces.push({
          firstElement: first,
          bytes: blocks * format.blockBytes,
          paddedBytes,
          staging,
        });
      }
    } finally {
      validation = device.popErrorScope();
    }
    // Ask for every read-back now: the maps and the validation result resolve at the same device
    // poll (Deno polls about every 10 ms), so awaiting validation first would cost one more poll.
    const maps = pieces.map((p) => p.staging.mapAsync(GPUMapMode.READ, 0, p.paddedBytes + 8));
    const mapped = Promise.all(maps);
    mapped.catch(() => {}); // awaited below once the commands are known to be valid
    const t1 = profile ? performance.now() : 0;
    if (profile) {
      fp4GpuTimings.calls++;
      fp4GpuTimings.syncMs += t1 - t0;
    }
    let invalid: GPUError | null;
    try {
      invalid = await validation;
    } catch (e: unknown) {
      invalid = e as GPUError;
    }
    if (profile) fp4GpuTimings.validationMs += performance.now() - t1;
    if (invalid !== null) {
      await Promise.allSettled(maps);
      for (const piece of pieces) {
        if (piece.staging.mapState === "mapped") piece.staging.unmap();
        pool.release(piece.staging);
      }
      throw new Error(`Cannot run ${PROGRAM} as WebGPU rejected the commands: ${invalid.message}`);
    }

    let out: Uint8Array;
    let badFinite = NONE;
    let badOuter = NONE;
    try {
      await mapped;
      const t2 = profile ? performance.now() : 0;
      if (profile) fp4GpuTimings.mapWaitMs += t2 - t1;
      const single = pieces.length === 1 && fp4GpuTuning.readback === "slice";
      out = single ? new Uint8Array(0) : new Uint8Array(total);
      let at = 0;
      for (const piece of pieces) {
        const range = piece.staging.getMappedRange(0, piece.paddedBytes + 8);
        if (single) out = new Uint8Array(range.slice(0, piece.bytes));
        else out.set(new Uint8Array(range, 0, piece.bytes), at);
        const flags = new Uint32Array(range, piece.paddedBytes, 2);
        if (flags[0]! !== NONE && badFinite === NONE) badFinite = piece.firstElement + flags[0]!;
        if (flags[1]! !== NONE && badOuter === NONE) badOuter = piece.firstElement + flags[1]!;
        piece.staging.unmap();
        at += piece.bytes;
      }
      if (profile) fp4GpuTimings.readMs += performance.now() - t2;
    } finally {
      for (const piece of pieces) {
        if (piece.staging.mapState === "mapped") piece.staging.unmap();
        pool.release(piece.staging);
      }
    }
    if (badFinite !== NONE) {
      throw new Fp4InputError(
        format.label,
        badFinite,
        nPerRow,
        nonFiniteReason(elementOf(rows, badFinite)),
      );
    }
    if (badOuter !== NONE) {
      throw new Fp4InputError(
        format.label,
        badOuter,
        nPerRow,
        `overflows float32 when divided by the outer scale ${search.outerScale}`,
      );
    }
    return out;
  }
}
