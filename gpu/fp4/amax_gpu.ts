/**
 * The outer scale of a tensor kept on the GPU, found there without a read-back: each uploaded
 * piece's largest finite |x| is folded into one word (amax.wgsl, the GPU twin of `finiteAmax`),
 * then outer_scale.wgsl turns that amax into the outer scale and its reciprocal (the same floats
 * as `fp4OuterScale` and `resolveFp4Search`), which the encode kernel reads from the same buffer.
 * The folds and the outer kernel go in one submission once the tensor is complete; the three
 * words come back with the encodes' own read-back.
 *
 * Before this, the amax was mapped back per tensor: each map blocked the thread until the queue
 * drained and held the tensor's encodes until it resolved.
 *
 * @module
 */
import amaxKernel from "./amax.wgsl" with { type: "text" };
import outerKernel from "./outer_scale.wgsl" with { type: "text" };
import { computePipelineOf, type GpuContext } from "../device.ts";
import type { GpuRows, GpuRowsPiece } from "./encode_gpu.ts";

const AMAX = "fp4_amax";
const OUTER = "fp4_outer_scale";
/** Invocations per workgroup and words per invocation (amax.wgsl's constants). */
const WORDS_PER_GROUP = 256 * 64;
/** Bytes of one record: amax bits, outer scale bits, 1/outer bits, unused (outer_scale.wgsl). */
export const OUTER_RECORD_BYTES = 16;
const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const RECORDS = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
/** Uniform blocks kept per device (a run needs a few: piece sizes and divisors). */
const MAX_UNIFORMS = 64;
/** Record buffers kept per device for later tensors. */
const MAX_SPARES = 8;

/** Bind groups of folds kept per device (pooled pieces and spare records come back). */
const MAX_BIND_GROUPS = 256;

/** Per device: uniform blocks by content, fold bind groups by buffers, spare record buffers. */
interface _DeviceState {
  readonly uniforms: Map<string, GPUBuffer>;
  readonly bindGroups: Map<string, GPUBindGroup>;
  readonly ids: WeakMap<GPUBuffer, number>;
  nextId: number;
  readonly spares: GPUBuffer[];
}
const states = new WeakMap<GPUDevice, _DeviceState>();

function stateOf(device: GPUDevice): _DeviceState {
  let state = states.get(device);
  if (state === undefined) {
    state = {
      uniforms: new Map(),
      bindGroups: new Map(),
      ids: new WeakMap(),
      nextId: 0,
      spares: [],
    };
    states.set(device, state);
  }
  return state;
}

/** A uniform block of four words, written once per distinct content. */
function uniformOf(device: GPUDevice, words: readonly number[]): GPUBuffer {
  const { uniforms } = stateOf(device);
  const key = words.join(",");
  let buffer = uniforms.get(key);
  if (buffer === undefined) {
    if (uniforms.size >= MAX_UNIFORMS) {
      // WebGPU keeps a destroyed buffer alive for commands already submitted.
      for (const old of uniforms.values()) old.destroy();
      uniforms.clear();
    }
    buffer = device.createBuffer({ size: 16, usage: UNIFORM, label: `${AMAX}_params` });
    device.queue.writeBuffer(buffer, 0, new Uint32Array(words));
    uniforms.set(key, buffer);
  }
  return buffer;
}

/**
 * The bind group of one fold, reused whenever the same buffers come back. A destroyed buffer is
 * never handed out again, so its groups are never looked up; the cache starts over when full.
 */
function foldBindGroup(
  device: GPUDevice,
  layout: GPUBindGroupLayout,
  buffers: readonly [GPUBuffer, GPUBuffer, GPUBuffer],
): GPUBindGroup {
  const state = stateOf(device);
  const key = buffers.map((b) => {
    let id = state.ids.get(b);
    if (id === undefined) state.ids.set(b, id = state.nextId++);
    return id;
  }).join(",");
  let group = state.bindGroups.get(key);
  if (group === undefined) {
    if (state.bindGroups.size >= MAX_BIND_GROUPS) state.bindGroups.clear();
    group = device.createBindGroup({
      label: AMAX,
      layout,
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    state.bindGroups.set(key, group);
  }
  return group;
}

/** Float32 bits of a number (rounded to float32). */
function bitsOf(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0]!;
}

/** Records the outer kernel over `count` records of `records` into a pass. */
function recordOuter(
  device: GPUDevice,
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  records: GPUBuffer,
  count: number,
  divisor: number,
): void {
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      label: OUTER,
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uniformOf(device, [bitsOf(divisor), count, 0, 0]) } },
        { binding: 1, resource: { buffer: records } },
      ],
    }),
  );
  pass.dispatchWorkgroups(Math.ceil(count / 64));
}

/** A validation scope's result as a promise that rejects with the program's name. */
async function checked(scope: Promise<GPUError | null>, program: string): Promise<void> {
  const error = await scope;
  if (error !== null) {
    throw new Error(`Cannot run ${program} as WebGPU rejected the commands: ${error.message}`);
  }
}

/** The amax of one tensor's uploaded pieces, and the outer scale it gives. */
export class GpuAmax {
  readonly #gpu: GpuContext;
  readonly #amax: GPUComputePipeline;
  readonly #outer: GPUComputePipeline;
  /** One record: amax, outer scale, 1/outer. */
  readonly #records: GPUBuffer;
  readonly #pieces: { piece: GpuRowsPiece; isBf16: boolean }[] = [];
  #queued = false;
  #released = false;

  private constructor(gpu: GpuContext, amax: GPUComputePipeline, outer: GPUComputePipeline) {
    this.#gpu = gpu;
    this.#amax = amax;
    this.#outer = outer;
    const device = gpu.device;
    const spare = stateOf(device).spares.pop();
    if (spare !== undefined) {
      // Queued after every earlier submission, so the previous tensor's commands are done with it.
      device.queue.writeBuffer(spare, 0, new Uint32Array(OUTER_RECORD_BYTES / 4));
    }
    // Created zeroed, as WebGPU buffers are: the empty max.
    this.#records = spare ??
      device.createBuffer({ size: OUTER_RECORD_BYTES, usage: RECORDS, label: `${OUTER}_record` });
  }

  /**
   * An empty amax on one GPU.
   * @throws {Error} when WebGPU rejects either kernel.
   */
  static async create(gpu: GpuContext): Promise<GpuAmax> {
    const [amax, outer] = await Promise.all([
      computePipelineOf(gpu.device, amaxKernel, AMAX),
      computePipelineOf(gpu.device, outerKernel, OUTER),
    ]);
    return new GpuAmax(gpu, amax, outer);
  }

  /** Adds uploaded rows; they must stay uploaded until {@linkcode queue} has been called. */
  fold(rows: GpuRows): void {
    if (this.#queued) throw new Error("Cannot fold rows into an amax already queued");
    for (const piece of rows.gpu) this.#pieces.push({ piece, isBf16: rows.isBf16 });
  }

  /**
   * Submits the folds and the outer kernel: once they run, the record buffer holds the amax, the
   * outer scale for `divisor` (see `fp4OuterDivisor`) and its reciprocal, as float32 bits. Commands
   * that read it may be submitted right after.
   * @returns the record buffer, and a promise that rejects if WebGPU rejected the commands.
   */
  queue(divisor: number): { records: GPUBuffer; valid: Promise<void> } {
    if (this.#queued || this.#released) throw new Error("Cannot queue an amax twice");
    this.#queued = true;
    const device = this.#gpu.device;
    const maxX = this.#gpu.limits.maxComputeWorkgroupsPerDimension;
    device.pushErrorScope("validation");
    const encoder = device.createCommandEncoder({ label: AMAX });
    const pass = encoder.beginComputePass({ label: AMAX });
    pass.setPipeline(this.#amax);
    const layout = this.#amax.getBindGroupLayout(0);
    for (const { piece, isBf16 } of this.#pieces) {
      const words = isBf16 ? piece.elements / 2 : piece.elements;
      const groups = Math.max(1, Math.ceil(words / WORDS_PER_GROUP));
      const groupsX = Math.min(groups, maxX);
      const params = uniformOf(device, [words, isBf16 ? 1 : 0, groupsX, 0]);
      pass.setBindGroup(0, foldBindGroup(device, layout, [params, piece.buffer, this.#records]));
      pass.dispatchWorkgroups(groupsX, Math.ceil(groups / groupsX));
    }
    this.#pieces.length = 0;
    recordOuter(device, pass, this.#outer, this.#records, 1, divisor);
    pass.end();
    device.queue.submit([encoder.finish()]);
    const valid = checked(device.popErrorScope(), `${AMAX} and ${OUTER}`);
    valid.catch(() => {}); // the caller awaits it
    return { records: this.#records, valid };
  }

  /**
   * Keeps the record buffer for a later tensor's amax, once every command reading it has been
   * submitted (or it was never queued).
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pieces.length = 0;
    const { spares } = stateOf(this.#gpu.device);
    if (spares.length < MAX_SPARES) spares.push(this.#records);
    else this.#records.destroy();
  }
}

/** Copies `size` bytes of a buffer back to the host (for tests: one map per call). */
async function readBack(device: GPUDevice, buffer: GPUBuffer, size: number): Promise<Uint32Array> {
  const staging = device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: `${OUTER}_staging`,
  });
  try {
    const encoder = device.createCommandEncoder({ label: OUTER });
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const words = new Uint32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return words;
  } finally {
    staging.destroy();
  }
}

/**
 * Reads a record that {@linkcode GpuAmax.queue} filled, as floats: for tests, which check the
 * amax alone (rows with NaN fail to encode, so the encodes bring no record back).
 */
export async function readOuterRecord(
  gpu: GpuContext,
  records: GPUBuffer,
): Promise<{ amax: number; outerScale: number; inverse: number }> {
  const words = await readBack(gpu.device, records, OUTER_RECORD_BYTES);
  const [amax, outerScale, inverse] = new Float32Array(words.buffer);
  return { amax: amax!, outerScale: outerScale!, inverse: inverse! };
}

/**
 * Runs outer_scale.wgsl alone over many amaxes (float32 bits): for each, the bits of the outer
 * scale for `divisor` and of its reciprocal. For tests against the CPU rule.
 * @throws {Error} when WebGPU rejects the kernel or its commands.
 */
export async function outerScalesOnGpu(
  gpu: GpuContext,
  amaxBits: Uint32Array,
  divisor: number,
): Promise<{ outer: Uint32Array; inverse: Uint32Array }> {
  const device = gpu.device;
  const pipeline = await computePipelineOf(device, outerKernel, OUTER);
  const count = amaxBits.length;
  const records = new Uint32Array(4 * Math.max(1, count));
  amaxBits.forEach((bits, k) => records[4 * k] = bits);
  const buffer = device.createBuffer({ size: records.byteLength, usage: RECORDS, label: OUTER });
  try {
    device.queue.writeBuffer(buffer, 0, records);
    device.pushErrorScope("validation");
    const encoder = device.createCommandEncoder({ label: OUTER });
    const pass = encoder.beginComputePass({ label: OUTER });
    recordOuter(device, pass, pipeline, buffer, count, divisor);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await checked(device.popErrorScope(), OUTER);
    const out = await readBack(device, buffer, records.byteLength);
    const pick = (word: number) =>
      Uint32Array.from({ length: count }, (_, k) => out[4 * k + word]!);
    return { outer: pick(1), inverse: pick(2) };
  } finally {
    buffer.destroy();
  }
}
