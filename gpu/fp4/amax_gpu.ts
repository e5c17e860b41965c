/**
 * The largest finite |x| of rows already on the GPU (amax.wgsl), accumulated over several
 * uploads: the GPU twin of `finiteAmax`, so that an outer scale needs no second read of a tensor
 * kept on the GPU. Each fold is submitted at once; {@linkcode GpuAmax.read} maps one word.
 *
 * @module
 */
import kernel from "./amax.wgsl" with { type: "text" };
import { busyGate } from "../busy_gate.ts";
import { buildComputePipeline, type GpuContext } from "../device.ts";
import type { GpuRows } from "./encode_gpu.ts";

const PROGRAM = "fp4_amax";
/** Invocations per workgroup and words per invocation (amax.wgsl's constants). */
const WORDS_PER_GROUP = 256 * 64;
const PARAMS_BYTES = 16;

const pipelines = new WeakMap<GPUDevice, Promise<GPUComputePipeline>>();

/** The buffers of one running amax. */
interface _Buffers {
  /** The running max as float32 bits in word 0. */
  readonly result: GPUBuffer;
  /** One uniform block, rewritten per fold: the queue orders each write after earlier submits. */
  readonly params: GPUBuffer;
  /** Where `result` is mapped for reading. */
  readonly staging: GPUBuffer;
}

/**
 * Buffers of finished amaxes, per device, for the next tensor's: a conversion runs one amax per
 * tensor, and each `createBuffer` costs Deno main-thread time (all of a 0.95 GB conversion's
 * took 51–64 ms before this reuse, 36–47 ms after: bench/gpu_convert_trace.ts on an H100).
 */
const spares = new WeakMap<GPUDevice, _Buffers[]>();
const MAX_SPARES = 8;

function _buffersFor(device: GPUDevice): _Buffers {
  const reused = spares.get(device)?.pop();
  if (reused) {
    // Queued after every earlier submission, so the previous tensor's folds are done with it.
    device.queue.writeBuffer(reused.result, 0, new Uint32Array(1));
    return reused;
  }
  return {
    // Created zeroed, as WebGPU buffers are: the empty max.
    result: device.createBuffer({
      size: 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: `${PROGRAM}_result`,
    }),
    params: device.createBuffer({
      size: PARAMS_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: `${PROGRAM}_params`,
    }),
    staging: device.createBuffer({
      size: 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `${PROGRAM}_staging`,
    }),
  };
}

/** Keeps `buffers` for a later amax on `device`, or frees them. */
function _spare(device: GPUDevice, buffers: _Buffers): void {
  const list = spares.get(device) ?? [];
  spares.set(device, list);
  if (list.length < MAX_SPARES && buffers.staging.mapState === "unmapped") {
    list.push(buffers);
    return;
  }
  _destroy(buffers);
}

function _destroy(buffers: _Buffers): void {
  buffers.result.destroy();
  buffers.params.destroy();
  buffers.staging.destroy();
}

/**
 * The kernel's pipeline on a device, built on first use.
 * @throws {Error} with the compiler's message when WebGPU rejects the kernel.
 */
function pipelineOf(device: GPUDevice): Promise<GPUComputePipeline> {
  let pipeline = pipelines.get(device);
  if (pipeline === undefined) {
    pipeline = buildComputePipeline(device, kernel, PROGRAM);
    pipelines.set(device, pipeline);
    pipeline.catch(() => pipelines.delete(device));
  }
  return pipeline;
}

/** A running amax on the GPU; {@linkcode GpuAmax.read} ends it. */
export class GpuAmax {
  readonly #gpu: GpuContext;
  readonly #pipeline: GPUComputePipeline;
  readonly #buffers: _Buffers;
  /** Validation results of the folds, checked before the read. */
  readonly #validations: Promise<GPUError | null>[] = [];
  #done = false;

  private constructor(gpu: GpuContext, pipeline: GPUComputePipeline) {
    this.#gpu = gpu;
    this.#pipeline = pipeline;
    this.#buffers = _buffersFor(gpu.device);
  }

  /**
   * A running amax starting at 0 on one GPU.
   * @throws {Error} when WebGPU rejects the kernel.
   */
  static async create(gpu: GpuContext): Promise<GpuAmax> {
    return new GpuAmax(gpu, await pipelineOf(gpu.device));
  }

  /** Folds the largest finite |x| of uploaded rows into the running max (submitted at once). */
  fold(rows: GpuRows): void {
    if (this.#done) throw new Error("Cannot fold into an amax that was read");
    const device = this.#gpu.device;
    const { params, result } = this.#buffers;
    const maxX = this.#gpu.limits.maxComputeWorkgroupsPerDimension;
    device.pushErrorScope("validation");
    for (const piece of rows.gpu) {
      const words = rows.isBf16 ? piece.elements / 2 : piece.elements;
      const groups = Math.max(1, Math.ceil(words / WORDS_PER_GROUP));
      const groupsX = Math.min(groups, maxX);
      device.queue.writeBuffer(
        params,
        0,
        new Uint32Array([words, rows.isBf16 ? 1 : 0, groupsX, 0]),
      );
      const bindGroup = device.createBindGroup({
        label: PROGRAM,
        layout: this.#pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: params } },
          { binding: 1, resource: { buffer: piece.buffer } },
          { binding: 2, resource: { buffer: result } },
        ],
      });
      const encoder = device.createCommandEncoder({ label: PROGRAM });
      const pass = encoder.beginComputePass({ label: PROGRAM });
      pass.setPipeline(this.#pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(groupsX, Math.ceil(groups / groupsX));
      pass.end();
      device.queue.submit([encoder.finish()]);
    }
    const validation = device.popErrorScope();
    validation.catch(() => {}); // awaited in read()
    this.#validations.push(validation);
  }

  /** The largest finite |x| folded in (0 for none), as a number; gives the GPU buffers back. */
  async read(): Promise<number> {
    if (this.#done) throw new Error("Cannot read an amax twice");
    this.#done = true;
    const device = this.#gpu.device;
    const { result, staging } = this.#buffers;
    let failed = true;
    try {
      const encoder = device.createCommandEncoder({ label: PROGRAM });
      encoder.copyBufferToBuffer(result, 0, staging, 0, 4);
      device.queue.submit([encoder.finish()]);
      // Mapped once the GPU should be done (the map blocks until then: gpu/busy_gate.ts); the map
      // and the validation results resolve at the same device poll.
      const gate = busyGate(device);
      await gate.idle();
      const t = performance.now();
      const mapped = staging.mapAsync(GPUMapMode.READ);
      gate.blocked(performance.now() - t);
      mapped.catch(() => {}); // awaited below once the folds are known to be valid
      for (const validation of this.#validations) {
        const error = await validation;
        if (error !== null) {
          throw new Error(
            `Cannot run ${PROGRAM} as WebGPU rejected the commands: ${error.message}`,
          );
        }
      }
      await mapped;
      const amax = new Float32Array(staging.getMappedRange().slice(0))[0]!;
      staging.unmap();
      failed = false;
      return amax;
    } finally {
      // After a failure the buffers may still be in use or mapping: never reused.
      if (failed) _destroy(this.#buffers);
      else _spare(device, this.#buffers);
    }
  }

  /** Gives the GPU buffers back without reading. */
  discard(): void {
    if (this.#done) return;
    this.#done = true;
    _spare(this.#gpu.device, this.#buffers);
  }
}
