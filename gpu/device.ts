/**
 * The WebGPU device, acquired once per process, and the `--device auto|gpu|cpu` choice.
 *
 * Deno's defaults are the WebGPU minimum limits (128 MiB per storage binding, 256 MiB per buffer),
 * so the device is requested with the adapter's own limits for the ones our kernels lean on.
 * Deno returns a null adapter when no backend loads (e.g. libvulkan missing), which `auto` treats
 * as "use the CPU".
 *
 * @module
 */

/** Where to run: the GPU when there is one (`auto`), the GPU or fail (`gpu`), the CPU (`cpu`). */
export type DeviceChoice = "auto" | "gpu" | "cpu";

/** An acquired GPU. */
export interface GpuContext {
  readonly device: GPUDevice;
  /** The adapter's description ("llvmpipe (LLVM 15.0.6, 256 bits)"), for messages and benches. */
  readonly description: string;
  /** Whether the adapter is a software fallback (llvmpipe, WARP). */
  readonly isFallback: boolean;
  /** Limits granted to the device. */
  readonly limits: GpuLimits;
}

/** The limits Sluice's kernels size their work by. */
export interface GpuLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxStorageBuffersPerShaderStage: number;
}

const REQUESTED: readonly (keyof GpuLimits)[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeInvocationsPerWorkgroup",
  "maxStorageBuffersPerShaderStage",
];

let pending: Promise<GpuContext | null> | null = null;

async function open(): Promise<GpuContext | null> {
  if (typeof navigator === "undefined" || navigator.gpu === undefined) return null;
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) return null;
  const requiredLimits: Record<string, number> = {};
  for (const key of REQUESTED) requiredLimits[key] = adapter.limits[key];
  const device = await adapter.requestDevice({ requiredLimits });
  device.lost.then(() => {
    pending = null;
  });
  const limits = {} as Record<keyof GpuLimits, number>;
  for (const key of REQUESTED) limits[key] = device.limits[key];
  return {
    device,
    description: adapter.info.description || adapter.info.vendor || "unknown adapter",
    isFallback: adapter.info.isFallbackAdapter ?? false,
    limits,
  };
}

/**
 * The process's GPU for a device choice: null for `cpu`, and for `auto` when there is no adapter.
 *
 * @throws {Error} for `gpu` when no WebGPU adapter is available or opening it fails.
 *
 * @example The CPU choice never touches WebGPU
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { acquireGpu } from "./device.ts";
 * strictEqual(await acquireGpu("cpu"), null);
 * ```
 */
export async function acquireGpu(choice: DeviceChoice): Promise<GpuContext | null> {
  if (choice === "cpu") return null;
  if (choice !== "auto" && choice !== "gpu") {
    throw new RangeError(`Cannot choose a device as it is not auto, gpu or cpu: ${choice}`);
  }
  pending ??= open().catch((e: unknown) => {
    pending = null;
    throw e;
  });
  let gpu: GpuContext | null;
  try {
    gpu = await pending;
  } catch (e: unknown) {
    // A backend that fails to load is "no GPU" for auto, an error for gpu.
    if (choice === "auto") return null;
    throw new Error(`Cannot use the GPU as WebGPU failed to open it: ${(e as Error).message}`);
  }
  if (gpu === null && choice === "gpu") {
    throw new Error("Cannot use the GPU as WebGPU found no adapter: null");
  }
  return gpu;
}

/**
 * Compiles a WGSL compute program (entry point `main`).
 * @throws {Error} with the compiler's message when WebGPU rejects it.
 */
export async function buildComputePipeline(
  device: GPUDevice,
  code: string,
  label: string,
): Promise<GPUComputePipeline> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code, label });
  const pipeline = device.createComputePipeline({
    label,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const error = await device.popErrorScope();
  if (error !== null) {
    throw new Error(
      `Cannot build the GPU program ${label} as WebGPU rejected it: ${error.message}`,
    );
  }
  return pipeline;
}

const pipelines = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/**
 * {@linkcode buildComputePipeline} once per device and label (a failed build is tried again).
 * @throws {Error} with the compiler's message when WebGPU rejects it.
 */
export function computePipelineOf(
  device: GPUDevice,
  code: string,
  label: string,
): Promise<GPUComputePipeline> {
  let built = pipelines.get(device);
  if (built === undefined) {
    built = new Map();
    pipelines.set(device, built);
  }
  let pipeline = built.get(label);
  if (pipeline === undefined) {
    pipeline = buildComputePipeline(device, code, label);
    built.set(label, pipeline);
    pipeline.catch(() => built.delete(label));
  }
  return pipeline;
}
