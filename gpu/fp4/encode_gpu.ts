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
 * first. Rows arrive as float32, or as bfloat16 bytes that the kernel widens (half the upload and
 * no CPU decode). A call is cut into pieces of `fp4GpuTuning.pieceBytes`; each piece uploads its
 * rows with `queue.writeBuffer`, dispatches, copies its packed words and two error flags into the
 * call's one staging buffer and is submitted at once, so the GPU works on a piece while the next
 * uploads. The staging buffer is mapped once per call.
 *
 * Where the time goes (NVIDIA H200, Deno 2.9.6, NVFP4 full + imatrix, bench/gpu_prof.ts): the
 * kernel takes about 0.11 s per Gi elements, so the main thread sets the pace: `writeBuffer` (about
 * 0.25 s per Gi BF16 elements), `mapAsync` (Deno polls the device with a blocking wait for all
 * submitted work, then sleeps 10 ms before resolving: each call takes ≥ 10 ms, so callers should
 * pass millions of elements and keep several calls in flight), and `getMappedRange`, which copies
 * the mapped range into a fresh array (about 0.3 s per Gi elements of NVFP4 output). Uniform blocks
 * and bind groups are cached, and the error flags share the output buffer, to keep the WebGPU calls
 * per piece few.
 *
 * @module
 */
import kernel from "./encode.wgsl" with { type: "text" };
import { BufferPool } from "../buffer_pool.ts";
import { busyGate } from "../busy_gate.ts";
import { buildComputePipeline, type GpuContext } from "../device.ts";
import { fp4Bytes, type Fp4Format } from "./formats.ts";
import { OUTER_RECORD_BYTES } from "./amax_gpu.ts";
import { checkRopeHeads, ropeSourceRow } from "../rope_rows.ts";
import { Fp4InputError, nonFiniteReason } from "./input_error.ts";
import type { ResolvedFp4Search } from "./search_options.ts";
import { fp4Tables, packFp4Tables } from "./tables.ts";
import { type Fp4Weights, WEIGHTS_COLUMN, WEIGHTS_ELEMENT, WEIGHTS_NONE } from "./weights.ts";

/** Invocations per workgroup (the kernel's @workgroup_size). */
const WORKGROUP = 64;
/** Bytes of the uniform block: 23 u32 (padded to 24), then the 8 levels as two vec4. */
const PARAMS_BYTES = 128;
/** Flag value meaning "no element" (the kernel writes 0xffffffff − index, 0 for none). */
const NONE = 0xffffffff;
/** Bytes of the two error flags after the output words. */
const FLAG_BYTES = 8;
/** Cached uniform blocks and bind groups per device, at most (then the cache starts over). */
const CACHE_ENTRIES = 64;
/** The program name; its cache key has no other part, as formats are uniforms. */
const PROGRAM = "fp4_encode";

const STORAGE_IN = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const STORAGE_OUT = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const STAGING = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;

/** Per device: the pipeline, a buffer pool, each format's tables and the call caches. */
interface DeviceState {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly pool: BufferPool;
  readonly tables: Map<string, GPUBuffer>;
  /** A stand-in bound when there are no weights. */
  readonly noWeights: GPUBuffer;
  /** A stand-in bound when the outer scale is a uniform. */
  readonly noRecord: GPUBuffer;
  /** Uniform blocks by content: chunks of one tensor mostly share one. */
  readonly uniforms: Map<string, GPUBuffer>;
  /** Bind groups by the ids of their buffers (pooled buffers come back, and so do the groups). */
  readonly bindGroups: Map<string, GPUBindGroup>;
  /** The pool's `destroyed` count the bind groups were made under. */
  bindGroupsEpoch: number;
  readonly ids: WeakMap<GPUBuffer, number>;
  nextId: number;
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
  const pipeline = await buildComputePipeline(device, kernel, PROGRAM);
  return {
    pipeline,
    layout: pipeline.getBindGroupLayout(0),
    pool: new BufferPool(device),
    tables: new Map(),
    noWeights: device.createBuffer({ size: 16, usage: STORAGE_IN, label: `${PROGRAM}_no_weights` }),
    noRecord: device.createBuffer({ size: 16, usage: STORAGE_IN, label: `${PROGRAM}_no_record` }),
    uniforms: new Map(),
    bindGroups: new Map(),
    bindGroupsEpoch: 0,
    ids: new WeakMap(),
    nextId: 0,
  };
}

function idOf(state: DeviceState, buffer: GPUBuffer): number {
  let id = state.ids.get(buffer);
  if (id === undefined) {
    id = state.nextId++;
    state.ids.set(buffer, id);
  }
  return id;
}

/** A uniform buffer holding `params`, written once per distinct content. */
function uniformOf(
  device: GPUDevice,
  state: DeviceState,
  params: Uint32Array<ArrayBuffer>,
): GPUBuffer {
  const key = params.join(",");
  let buffer = state.uniforms.get(key);
  if (buffer === undefined) {
    if (state.uniforms.size >= CACHE_ENTRIES) {
      // Submitted commands keep their contents: the queue orders later writes after them.
      for (const old of state.uniforms.values()) state.pool.release(old);
      state.uniforms.clear();
    }
    buffer = state.pool.acquire(PARAMS_BYTES, UNIFORM, "fp4_params");
    device.queue.writeBuffer(buffer, 0, params);
    state.uniforms.set(key, buffer);
  }
  return buffer;
}

/**
 * The bind group of one piece. Whole buffers are bound (the pool's sizes are powers of two) and
 * the kernel reads only what the uniforms say, so a group depends on the buffers alone and is
 * reused whenever the pool hands the same buffers out again; a pool that destroyed a buffer
 * empties the cache.
 */
function bindGroupOf(
  device: GPUDevice,
  state: DeviceState,
  buffers: readonly GPUBuffer[],
): GPUBindGroup {
  if (state.bindGroupsEpoch !== state.pool.destroyed || state.bindGroups.size >= CACHE_ENTRIES) {
    state.bindGroups.clear();
    state.bindGroupsEpoch = state.pool.destroyed;
  }
  const key = buffers.map((b) => idOf(state, b)).join(",");
  let group = state.bindGroups.get(key);
  if (group === undefined) {
    group = device.createBindGroup({
      label: PROGRAM,
      layout: state.layout,
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    state.bindGroups.set(key, group);
  }
  return group;
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
  outerSource: number,
  headRows: number,
): Uint32Array<ArrayBuffer> {
  const u = new Uint32Array(PARAMS_BYTES / 4);
  const f = new Float32Array(u.buffer);
  u.set([blocks, nPerRow, search.mode, search.window, search.fourOverSix ? 1 : 0, weights.kind]);
  f[6] = search.invOuter;
  u.set([search.maxAbsBits, 0, strideY, words, format.blockSize, format.subBlockSize], 7);
  u.set([format.blockBytes, format.scaleOffset, format.codeOffset, format.pairSpan], 13);
  u.set([format.minSearchCode, format.maxCode, format.elementRule === "reciprocal" ? 1 : 0], 17);
  u[20] = inputKind;
  u[21] = outerSource;
  u[22] = headRows;
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

/**
 * Whole rows already on the GPU (from {@linkcode Fp4GpuEncoder.upload}): float32 or bfloat16 words
 * in pooled buffers, one dispatch's worth each. Encoding them consumes the buffers.
 */
export interface GpuRows {
  readonly gpu: readonly GpuRowsPiece[];
  readonly isBf16: boolean;
  /** Rows per head when they are Q/K rows in rotate-half order (see gpu/rope_rows.ts), else 0. */
  readonly headRows: number;
  /** Elements over all pieces. */
  readonly elements: number;
  /** Bytes of the buffers, for budgets. */
  readonly bytes: number;
}

/** One buffer of {@linkcode GpuRows}: `elements` elements from its start. */
export interface GpuRowsPiece {
  readonly buffer: GPUBuffer;
  readonly elements: number;
}

/**
 * Why element `i` of the output order is not finite (GPU rows are not read back for it).
 * @param headRows see {@linkcode GpuRows.headRows}
 */
function reasonAt(
  rows: Float32Array | Bf16Rows | GpuRows,
  i: number,
  nPerRow: number,
  headRows: number,
): string {
  if (headRows > 0) {
    const row = Math.floor(i / nPerRow);
    i += (ropeSourceRow(row, headRows) - row) * nPerRow;
  }
  if (rows instanceof Float32Array) return nonFiniteReason(rows[i]!);
  if ("gpu" in rows) return "is NaN or infinite";
  const bits = ((rows.bf16[2 * i]! << 16) | (rows.bf16[2 * i + 1]! << 24)) >>> 0;
  return nonFiniteReason(new Float32Array(new Uint32Array([bits]).buffer)[0]!);
}

/**
 * Knobs of the shell, for benches (bench/gpu_prof.ts) rather than callers: the defaults are the
 * measured best on an H200.
 */
export const fp4GpuTuning = {
  /**
   * Input bytes per dispatch and submission: a larger call is cut into pieces of this size (in
   * whole rows) so that the GPU starts on the first while the next uploads.
   */
  pieceBytes: 8 * 2 ** 20,
  /** Accumulate fp4GpuTimings. */
  profile: false,
};

/** Time spent per phase over all calls while `fp4GpuTuning.profile` is on (milliseconds). */
export const fp4GpuTimings = {
  calls: 0,
  pieces: 0,
  /** Synchronous part of encode (uploads, encoding, submission). */
  syncMs: 0,
  /** Of which queue.writeBuffer of the rows, */
  uploadMs: 0,
  /** bind group and command encoding, */
  encodeMs: 0,
  /** and queue.submit. */
  submitMs: 0,
  /** From the end of the synchronous part until validation resolved. */
  validationMs: 0,
  /** In mapAsync calls themselves, */
  mapCallMs: 0,
  /** and from the end of the synchronous part until the read-back was mapped. */
  mapWaitMs: 0,
  /** Copying the mapped bytes out and unmapping. */
  readMs: 0,
};

function leastCommonMultiple(a: number, b: number): number {
  let [x, y] = [a, b];
  while (y !== 0) [x, y] = [y, x % y];
  return (a / x) * b;
}

/** What {@linkcode Fp4GpuEncoder.encodeScaled} returns. */
export interface Fp4ScaledBytes {
  readonly bytes: Uint8Array;
  /** The largest finite |x| of the tensor the outer scale was found for. */
  readonly amax: number;
  /** The outer scale the rows were divided by (as float32). */
  readonly outerScale: number;
}

/** One dispatch's worth of rows and its buffers. */
interface Piece {
  readonly firstElement: number;
  readonly elements: number;
  /** Where its bytes start in the call's output, and how many. */
  readonly at: number;
  readonly bytes: number;
  /** Where its bytes start in the staging buffer (a multiple of 4). */
  readonly stagingAt: number;
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

  /**
   * Element count of one dispatch: the tuning's piece size in whole rows (whole heads when rows
   * are in rope order) within the buffer limits.
   */
  #piece(nPerRow: number, elementBytes: number, headRows: number): number {
    const limits = this.#gpu.limits;
    const bytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    // Rows per piece: a multiple of `align` when it fits, so that a piece's bytes are whole words
    // and the pieces lie back to back in the staging buffer.
    const rowBytes = (nPerRow / this.#format.blockSize) * this.#format.blockBytes;
    const align = rowBytes % 4 === 0 ? 1 : rowBytes % 2 === 0 ? 2 : 4;
    const unit = headRows > 0 ? leastCommonMultiple(headRows, align) : align;
    const limit = Math.floor(bytes / 4 / nPerRow);
    // Whole heads must fit; alignment is only wanted.
    const rows = headRows > 0 ? limit - (limit % unit) : limit;
    if (rows < 1) {
      throw new RangeError(
        `Cannot encode ${this.#format.label} on the GPU as ${
          Math.max(1, headRows)
        } rows of ${nPerRow} exceed its buffer limit: ${bytes} bytes`,
      );
    }
    let wanted = Math.max(1, Math.floor(fp4GpuTuning.pieceBytes / elementBytes / nPerRow));
    wanted = Math.max(unit, wanted - (wanted % unit));
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
   * Uploads whole rows into pooled GPU buffers (one per dispatch), to be encoded later by
   * {@linkcode encode}, which consumes them, or given back with {@linkcode release}.
   * @param headRows rows per head when the rows are Q/K rows in rotate-half order, to be read in
   * rope order (gpu/rope_rows.ts); 0 when they are in order.
   * @throws {RangeError} for rows that are not whole rows of `nPerRow` (or whole heads), or
   * bfloat16 bytes that are not whole words.
   */
  upload(rows: Float32Array | Bf16Rows, nPerRow: number, headRows = 0): GpuRows {
    const bf16 = rows instanceof Float32Array ? null : rows.bf16;
    const length = bf16 === null ? (rows as Float32Array).length : bf16.length / 2;
    if (!Number.isInteger(length) || length % nPerRow !== 0 || (bf16 && bf16.length % 4 !== 0)) {
      throw new RangeError(
        `Cannot upload ${this.#format.label} rows as ${length} elements are not whole rows of ${nPerRow} in whole words`,
      );
    }
    checkRopeHeads(this.#format.label, length / nPerRow, headRows);
    const step = this.#piece(nPerRow, bf16 === null ? 4 : 2, headRows);
    const gpu: GpuRowsPiece[] = [];
    let bytes = 0;
    for (let first = 0; first < length; first += step) {
      const elements = Math.min(step, length - first);
      const buffer = bf16 === null
        ? this.#upload((rows as Float32Array).subarray(first, first + elements), "rows")
        : this.#upload(bf16.subarray(first * 2, (first + elements) * 2), "rows");
      gpu.push({ buffer, elements });
      bytes += buffer.size;
    }
    return { gpu, isBf16: bf16 !== null, headRows, elements: length, bytes };
  }

  /** Gives uploaded rows that will not be encoded back to the pool. */
  release(rows: GpuRows): void {
    for (const piece of rows.gpu) this.#state.pool.release(piece.buffer);
  }

  /**
   * Encodes whole rows, float32 or bfloat16, from the host or already uploaded (the call then
   * takes the buffers back, valid or not); same bytes as `encodeFp4IntoCpu` with the same
   * arguments (bfloat16 rows decoded to float32 first, rows in rotate-half order permuted).
   * @param headRows for host rows, as in {@linkcode upload} (uploaded rows carry their own).
   * @throws {Fp4InputError} for a NaN or ±inf element, or one the outer scale overflows.
   * @throws {RangeError} for rows in rotate-half order with per-element weights.
   */
  async encode(
    rows: Float32Array | Bf16Rows | GpuRows,
    nPerRow: number,
    search: ResolvedFp4Search,
    weights: Fp4Weights,
    headRows = 0,
  ): Promise<Uint8Array> {
    return (await this.#encode(rows, nPerRow, search, weights, null, headRows)).bytes;
  }

  /**
   * Encodes uploaded rows (and takes their buffers back) divided by the outer scale in `record`,
   * which `GpuAmax.queue` filled on the GPU (submitted before this call; `search` must have no
   * outer scale of its own), and reads the record back with the bytes: the same bytes as
   * {@linkcode encode} given that outer scale.
   * @throws {Fp4InputError} for a NaN or ±inf element.
   */
  async encodeScaled(
    rows: GpuRows,
    nPerRow: number,
    search: ResolvedFp4Search,
    weights: Fp4Weights,
    record: GPUBuffer,
  ): Promise<Fp4ScaledBytes> {
    const { bytes, words } = await this.#encode(rows, nPerRow, search, weights, record, 0);
    const values = new Float32Array(words!.buffer);
    return { bytes, amax: values[0]!, outerScale: values[1]! };
  }

  async #encode(
    rows: Float32Array | Bf16Rows | GpuRows,
    nPerRow: number,
    search: ResolvedFp4Search,
    weights: Fp4Weights,
    record: GPUBuffer | null,
    hostHeadRows: number,
  ): Promise<{ bytes: Uint8Array; words: Uint32Array | null }> {
    const format = this.#format;
    const onGpu = "gpu" in rows ? rows : null;
    const bf16 = "bf16" in rows ? rows.bf16 : null;
    const length = onGpu?.elements ??
      (bf16 === null ? (rows as Float32Array).length : bf16.length / 2);
    const isBf16 = onGpu?.isBf16 ?? bf16 !== null;
    const headRows = onGpu?.headRows ?? hostHeadRows;
    const total = fp4Bytes(format, length);
    try {
      if (!Number.isInteger(length) || length % nPerRow !== 0) {
        throw new RangeError(
          `Cannot encode ${format.label} as ${length} elements are not whole rows of ${nPerRow}`,
        );
      }
      checkRopeHeads(format.label, length / nPerRow, headRows);
      if (headRows > 0 && weights.kind === WEIGHTS_ELEMENT) {
        throw new RangeError(
          `Cannot encode ${format.label} rows in rotate-half order with per-element weights`,
        );
      }
    } catch (e: unknown) {
      if (onGpu !== null) this.release(onGpu);
      throw e;
    }
    const profile = fp4GpuTuning.profile;
    const t0 = profile ? performance.now() : 0;
    const device = this.#gpu.device;
    const state = this.#state;
    const pool = state.pool;
    const step = this.#piece(nPerRow, isBf16 ? 2 : 4, headRows);
    const maxBinding = Math.floor(this.#gpu.limits.maxStorageBufferBindingSize / 4) * 4;
    // One staging buffer and one map per call: each piece's words at a multiple of 4 (back to back
    // when every piece but the last has whole words, which #piece arranges, for uploads too), then
    // two flag words per piece.
    const pieces: Piece[] = [];
    let at = 0;
    let stagingAt = 0;
    for (let first = 0, k = 0; first < length; k++) {
      const elements = onGpu === null ? Math.min(step, length - first) : onGpu.gpu[k]!.elements;
      const bytes = (elements / format.blockSize) * format.blockBytes;
      pieces.push({ firstElement: first, elements, at, bytes, stagingAt });
      at += bytes;
      stagingAt += Math.ceil(bytes / 4) * 4;
      first += elements;
    }
    const flagsAt = stagingAt;
    const recordAt = flagsAt + FLAG_BYTES * pieces.length;
    const mapBytes = recordAt + (record === null ? 0 : OUTER_RECORD_BYTES);
    const staging = pool.acquire(mapBytes, STAGING, "fp4_staging");
    device.pushErrorScope("validation");
    let validation: Promise<GPUError | null>;
    let k = 0;
    try {
      for (; k < pieces.length; k++) {
        const piece = pieces[k]!;
        const first = piece.firstElement;
        const elements = piece.elements;
        const blocks = elements / format.blockSize;
        const threads = blocks * (format.blockSize / format.subBlockSize);
        const paddedBytes = Math.ceil(piece.bytes / 4) * 4;
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
          isBf16 ? INPUT_BF16 : INPUT_F32,
          record === null ? 0 : 1,
          headRows,
        );
        const uniform = uniformOf(device, state, params);
        const tu = profile ? performance.now() : 0;
        const input = onGpu !== null
          ? onGpu.gpu[k]!.buffer
          : bf16 === null
          ? this.#upload((rows as Float32Array).subarray(first, first + elements), "rows")
          : this.#upload(bf16.subarray(first * 2, (first + elements) * 2), "rows");
        if (profile) fp4GpuTimings.uploadMs += performance.now() - tu;
        const weightBuffer = this.#weightsBuffer(weights, first, elements);
        const output = pool.acquire(paddedBytes + FLAG_BYTES, STORAGE_OUT, "fp4_output");
        if (Math.max(input.size, output.size, weightBuffer?.size ?? 0) > maxBinding) {
          throw new RangeError(
            `Cannot encode ${format.label} on the GPU as a piece of ${elements} elements exceeds its binding limit: ${maxBinding} bytes`,
          );
        }
        const tb = profile ? performance.now() : 0;
        const bindGroup = bindGroupOf(device, state, [
          uniform,
          input,
          weightBuffer ?? state.noWeights,
          this.#tables,
          output,
          record ?? state.noRecord,
        ]);
        const encoder = device.createCommandEncoder({ label: PROGRAM });
        encoder.clearBuffer(output, 0, paddedBytes + FLAG_BYTES);
        const pass = encoder.beginComputePass({ label: PROGRAM });
        pass.setPipeline(state.pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(groupsX, groupsY);
        pass.end();
        encoder.copyBufferToBuffer(output, 0, staging, piece.stagingAt, paddedBytes);
        encoder.copyBufferToBuffer(output, paddedBytes, staging, flagsAt + FLAG_BYTES * k, 8);
        if (record !== null && k === 0) {
          encoder.copyBufferToBuffer(record, 0, staging, recordAt, OUTER_RECORD_BYTES);
        }
        const commands = encoder.finish();
        const ts = profile ? performance.now() : 0;
        // One submission per piece: the GPU starts on it while the next one uploads.
        device.queue.submit([commands]);
        if (profile) {
          fp4GpuTimings.encodeMs += ts - tb;
          fp4GpuTimings.submitMs += performance.now() - ts;
        }
        // Submitted: the queue orders any later write to these after this piece's commands.
        pool.release(input);
        pool.release(output);
        if (weights.kind === WEIGHTS_ELEMENT && weightBuffer !== null) pool.release(weightBuffer);
      }
    } catch (e: unknown) {
      pool.release(staging);
      // Uploaded rows not yet submitted are this call's to give back.
      if (onGpu !== null) onGpu.gpu.slice(k).forEach((p) => pool.release(p.buffer));
      throw e;
    } finally {
      validation = device.popErrorScope();
    }
    // Deno's mapAsync blocks this thread until the GPU has run all submitted work, then sleeps
    // 10 ms before resolving: map once the GPU should be done (gpu/busy_gate.ts), so that its
    // time overlaps with this thread's reading and uploads instead of adding to them. The map and
    // the validation result resolve at the same device poll: validation is awaited after.
    const gate = busyGate(device);
    gate.submitted(length);
    await gate.idle();
    const tm = performance.now();
    const mapped = staging.mapAsync(GPUMapMode.READ, 0, mapBytes);
    const blocked = performance.now() - tm;
    gate.blocked(blocked);
    if (profile) fp4GpuTimings.mapCallMs += blocked;
    mapped.catch(() => {}); // awaited below once the commands are known to be valid
    const t1 = profile ? performance.now() : 0;
    if (profile) {
      fp4GpuTimings.calls++;
      fp4GpuTimings.pieces += pieces.length;
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
      await Promise.allSettled([mapped]);
      if (staging.mapState === "mapped") staging.unmap();
      pool.release(staging);
      throw new Error(`Cannot run ${PROGRAM} as WebGPU rejected the commands: ${invalid.message}`);
    }

    let out: Uint8Array;
    let words: Uint32Array | null = null;
    let badFinite = NONE;
    let badOuter = NONE;
    try {
      await mapped;
      const t2 = profile ? performance.now() : 0;
      if (profile) fp4GpuTimings.mapWaitMs += t2 - t1;
      const range = staging.getMappedRange(0, mapBytes);
      const flags = new Uint32Array(range, flagsAt, 2 * pieces.length);
      pieces.forEach((piece, k) => {
        const f = flags[2 * k]!;
        const o = flags[2 * k + 1]!;
        if (f !== 0 && badFinite === NONE) badFinite = piece.firstElement + NONE - f;
        if (o !== 0 && badOuter === NONE) badOuter = piece.firstElement + NONE - o;
      });
      if (record !== null) words = new Uint32Array(range.slice(recordAt, mapBytes));
      if (pieces.every((piece) => piece.stagingAt === piece.at)) {
        // Deno's getMappedRange already copied the range into a fresh buffer, which unmap would
        // detach: transferring it keeps those bytes without a second copy.
        out = new Uint8Array(range.transfer(), 0, total);
      } else {
        out = new Uint8Array(total);
        for (const piece of pieces) {
          out.set(new Uint8Array(range, piece.stagingAt, piece.bytes), piece.at);
        }
      }
      staging.unmap();
      if (profile) fp4GpuTimings.readMs += performance.now() - t2;
    } finally {
      if (staging.mapState === "mapped") staging.unmap();
      pool.release(staging);
    }
    if (badFinite !== NONE) {
      throw new Fp4InputError(
        format.label,
        badFinite,
        nPerRow,
        reasonAt(rows, badFinite, nPerRow, headRows),
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
    return { bytes: out, words };
  }
}
