/**
 * The WebGPU shell of the FP4 encoder: runs encode.wgsl over whole rows and returns the bytes the
 * CPU twin (encode_cpu.ts) would return, or throws the same {@link Fp4InputError}.
 *
 * Program contract: one pipeline per (device, format), named `fp4_encode_<format>`, its cache key
 * the format name, which fixes every override constant (geometry, codebook, element rule). Search
 * mode, window, weights kind and outer scale are uniforms, so one pipeline serves every call.
 *
 * Each call uploads its rows with `queue.writeBuffer`, dispatches, copies the packed words and the
 * two error flags into one staging buffer and maps it once (Deno's `mapAsync` costs ≥ 10 ms, so a
 * call should carry millions of elements). Calls may overlap: start the next before awaiting the
 * previous and the GPU works on both. Buffers come from a pool and return to it after submission.
 *
 * @module
 */
import kernel from "./encode.wgsl" with { type: "text" };
import { BufferPool } from "../buffer_pool.ts";
import type { GpuContext } from "../device.ts";
import { type Fp4Format, fp4Bytes } from "./formats.ts";
import { Fp4InputError, nonFiniteReason } from "./input_error.ts";
import type { ResolvedFp4Search } from "./search_options.ts";
import { fp4Tables, packFp4Tables } from "./tables.ts";
import { type Fp4Weights, WEIGHTS_COLUMN, WEIGHTS_ELEMENT, WEIGHTS_NONE } from "./weights.ts";

/** Invocations per workgroup. */
const WORKGROUP = 64;
/** Bytes of the uniform block (12 u32). */
const PARAMS_BYTES = 48;
/** Flag value meaning "no element". */
const NONE = 0xffffffff;

const STORAGE_IN = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const STORAGE_OUT = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
const FLAGS = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const STAGING = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;

/** What one format's program needs baked in. */
interface Fp4Program {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  readonly tables: GPUBuffer;
  /** Blocks per invocation, so that each invocation writes whole 32-bit words. */
  readonly blocksPerThread: number;
  readonly wordsPerThread: number;
}

/** Per device: its buffer pool and the programs built so far. */
interface DeviceState {
  readonly pool: BufferPool;
  readonly programs: Map<string, Fp4Program>;
  readonly module: GPUShaderModule;
  /** A 4-byte stand-in bound when there are no weights. */
  readonly noWeights: GPUBuffer;
}

const states = new WeakMap<GPUDevice, DeviceState>();

function stateOf(device: GPUDevice): DeviceState {
  let state = states.get(device);
  if (state === undefined) {
    const noWeights = device.createBuffer({ size: 16, usage: STORAGE_IN, label: "fp4_no_weights" });
    state = {
      pool: new BufferPool(device),
      programs: new Map(),
      module: device.createShaderModule({ code: kernel, label: "fp4_encode" }),
      noWeights,
    };
    states.set(device, state);
  }
  return state;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function programOf(device: GPUDevice, format: Fp4Format): Fp4Program {
  const state = stateOf(device);
  const cached = state.programs.get(format.name);
  if (cached !== undefined) return cached;
  const blocksPerThread = 4 / gcd(format.blockBytes, 4);
  const wordsPerThread = (blocksPerThread * format.blockBytes) / 4;
  const name = `fp4_encode_${format.name}`;
  const l = format.levels;
  const pipeline = device.createComputePipeline({
    label: name,
    layout: "auto",
    compute: {
      module: state.module,
      entryPoint: "main",
      constants: {
        BLOCK: format.blockSize,
        SUB: format.subBlockSize,
        BLOCK_BYTES: format.blockBytes,
        SCALE_OFFSET: format.scaleOffset,
        CODE_OFFSET: format.codeOffset,
        PAIR: format.pairSpan,
        BLOCKS_PER_THREAD: blocksPerThread,
        MIN_CODE: format.minSearchCode,
        MAX_CODE: format.maxCode,
        RECIPROCAL: format.elementRule === "reciprocal" ? 1 : 0,
        L1: l[1]!,
        L2: l[2]!,
        L3: l[3]!,
        L4: l[4]!,
        L5: l[5]!,
        L6: l[6]!,
        L7: l[7]!,
        WORKGROUP,
      },
    },
  });
  const packed = packFp4Tables(fp4Tables(format));
  const tables = device.createBuffer({
    size: packed.byteLength,
    usage: STORAGE_IN,
    label: `${name}_tables`,
  });
  device.queue.writeBuffer(tables, 0, packed);
  const program = { name, pipeline, tables, blocksPerThread, wordsPerThread };
  state.programs.set(format.name, program);
  return program;
}

/** One dispatch's worth of rows and its buffers. */
interface Piece {
  readonly firstElement: number;
  readonly elements: number;
  readonly bytes: number;
  readonly paddedBytes: number;
  readonly staging: GPUBuffer;
}

/** Runs the FP4 kernel of one format on one GPU. */
export class Fp4GpuEncoder {
  readonly #gpu: GpuContext;
  readonly #format: Fp4Format;
  readonly #program: Fp4Program;
  readonly #state: DeviceState;
  /** Column weights uploaded once per imatrix array. */
  readonly #columnWeights = new WeakMap<Float32Array, GPUBuffer>();

  constructor(gpu: GpuContext, format: Fp4Format) {
    this.#gpu = gpu;
    this.#format = format;
    this.#program = programOf(gpu.device, format);
    this.#state = stateOf(gpu.device);
  }

  /** Largest whole-row element count one dispatch can take. */
  #piece(nPerRow: number): number {
    const limits = this.#gpu.limits;
    const bytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rows = Math.floor(bytes / 4 / nPerRow);
    if (rows < 1) {
      throw new RangeError(
        `Cannot encode ${this.#format.label} on the GPU as one row of ${nPerRow} exceeds its buffer limit: ${bytes} bytes`,
      );
    }
    return rows * nPerRow;
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
          label: `${this.#program.name}_imatrix`,
        });
        device.queue.writeBuffer(buffer, 0, weights.data as Float32Array<ArrayBuffer>);
        this.#columnWeights.set(weights.data, buffer);
      }
      return buffer;
    }
    return this.#upload(weights.data.subarray(first, first + count), "weights");
  }

  #upload(data: Float32Array, what: string): GPUBuffer {
    const buffer = this.#state.pool.acquire(data.byteLength, STORAGE_IN, `fp4_${what}`);
    this.#gpu.device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
    return buffer;
  }

  /**
   * Encodes whole rows; same bytes as `encodeFp4IntoCpu` with the same arguments.
   * @throws {Fp4InputError} for a NaN or ±inf element, or one the outer scale overflows.
   */
  async encode(
    rows: Float32Array,
    nPerRow: number,
    search: ResolvedFp4Search,
    weights: Fp4Weights,
  ): Promise<Uint8Array> {
    const format = this.#format;
    const total = fp4Bytes(format, rows.length);
    if (rows.length % nPerRow !== 0) {
      throw new RangeError(
        `Cannot encode ${format.label} as ${rows.length} elements are not whole rows of ${nPerRow}`,
      );
    }
    const device = this.#gpu.device;
    const pool = this.#state.pool;
    const program = this.#program;
    const step = this.#piece(nPerRow);
    const encoder = device.createCommandEncoder({ label: program.name });
    const pieces: Piece[] = [];
    const released: GPUBuffer[] = [];
    for (let first = 0; first < rows.length; first += step) {
      const elements = Math.min(step, rows.length - first);
      const blocks = elements / format.blockSize;
      const threads = Math.ceil(blocks / program.blocksPerThread);
      const paddedBytes = threads * program.wordsPerThread * 4;
      const workgroups = Math.ceil(threads / WORKGROUP);
      const maxX = this.#gpu.limits.maxComputeWorkgroupsPerDimension;
      const groupsX = Math.min(workgroups, maxX);
      const groupsY = Math.ceil(workgroups / groupsX);

      const params = new Uint32Array(PARAMS_BYTES / 4);
      const paramsF = new Float32Array(params.buffer);
      params[0] = blocks;
      params[1] = nPerRow;
      params[2] = search.mode;
      params[3] = search.window;
      params[4] = search.fourOverSix ? 1 : 0;
      params[5] = weights.kind;
      paramsF[6] = search.invOuter;
      params[7] = search.maxAbsBits;
      params[8] = 0;
      params[9] = groupsX * WORKGROUP;
      const uniform = pool.acquire(PARAMS_BYTES, UNIFORM, "fp4_params");
      device.queue.writeBuffer(uniform, 0, params);

      const input = this.#upload(rows.subarray(first, first + elements), "rows");
      const weightBuffer = this.#weightsBuffer(weights, first, elements);
      const output = pool.acquire(paddedBytes, STORAGE_OUT, "fp4_output");
      const flags = pool.acquire(8, FLAGS, "fp4_flags");
      device.queue.writeBuffer(flags, 0, new Uint32Array([NONE, NONE]));
      const staging = pool.acquire(paddedBytes + 8, STAGING, "fp4_staging");

      const bindGroup = device.createBindGroup({
        label: program.name,
        layout: program.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: uniform, size: PARAMS_BYTES } },
          { binding: 1, resource: { buffer: input, size: elements * 4 } },
          { binding: 2, resource: { buffer: weightBuffer ?? this.#state.noWeights } },
          { binding: 3, resource: { buffer: program.tables } },
          { binding: 4, resource: { buffer: output, size: paddedBytes } },
          { binding: 5, resource: { buffer: flags, size: 8 } },
        ],
      });
      const pass = encoder.beginComputePass({ label: program.name });
      pass.setPipeline(program.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(groupsX, groupsY);
      pass.end();
      encoder.copyBufferToBuffer(output, 0, staging, 0, paddedBytes);
      encoder.copyBufferToBuffer(flags, 0, staging, paddedBytes, 8);

      released.push(uniform, input, output, flags);
      if (weights.kind === WEIGHTS_ELEMENT && weightBuffer !== null) released.push(weightBuffer);
      pieces.push({
        firstElement: first,
        elements,
        bytes: blocks * format.blockBytes,
        paddedBytes,
        staging,
      });
    }
    device.queue.submit([encoder.finish()]);
    for (const buffer of released) pool.release(buffer);

    const out = new Uint8Array(total);
    let at = 0;
    let badFinite = NONE;
    let badOuter = NONE;
    try {
      for (const piece of pieces) {
        await piece.staging.mapAsync(GPUMapMode.READ, 0, piece.paddedBytes + 8);
        const mapped = piece.staging.getMappedRange(0, piece.paddedBytes + 8);
        out.set(new Uint8Array(mapped, 0, piece.bytes), at);
        const flags = new Uint32Array(mapped, piece.paddedBytes, 2);
        if (flags[0]! !== NONE && badFinite === NONE) badFinite = piece.firstElement + flags[0]!;
        if (flags[1]! !== NONE && badOuter === NONE) badOuter = piece.firstElement + flags[1]!;
        piece.staging.unmap();
        at += piece.bytes;
      }
    } finally {
      for (const piece of pieces) {
        if (piece.staging.mapState === "mapped") piece.staging.unmap();
        pool.release(piece.staging);
      }
    }
    if (badFinite !== NONE) {
      throw new Fp4InputError(format.label, badFinite, nPerRow, nonFiniteReason(rows[badFinite]!));
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
