/**
 * Where one GPU conversion's main-thread time goes: converts the model that bench/gpu_convert.ts
 * generated (run that first with SLUICE_BENCH_DIR set) to NVFP4 `full` + imatrix, and reports
 * the main thread's CPU time against the process's (Linux /proc), the wall time spent inside each
 * WebGPU call that Deno runs on the calling thread (working, or blocked until the GPU is done),
 * and the GPU buffers created. With `timeline`,
 * it also prints per 25 ms: GPU encode calls and file reads in flight, and how long the thread
 * was blocked (a 1 ms ticker's gaps over 3 ms).
 *
 * SLUICE_BENCH_DIR=DIR deno run -A bench/gpu_convert_trace.ts [outer|noOuter] [timeline]
 * (SLUICE_TUNE='{"callBytes": 8388608, "keptBytes": 33554432, "inFlight": 8, "pieceBytes":
 * 8388608, "workers": 4}' sets the resident tensors' call size, the encode stage's limits, the
 * GPU pieces and the CPU workers.)
 *
 * @module
 */
import { convert } from "../pipeline/convert.ts";
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { Fp4GpuEncoder, fp4GpuTuning } from "../gpu/fp4/encode_gpu.ts";
import { fp4ResidentTuning } from "../gpu/fp4/resident.ts";
import { encodeStreamTuning } from "../stages/encode_stream.ts";

type Method = (this: unknown, ...args: unknown[]) => unknown;

const work = Deno.env.get("SLUICE_BENCH_DIR");
if (!work) throw new Error("Cannot trace without SLUICE_BENCH_DIR (see bench/gpu_convert.ts)");
const outer = Deno.args[0] !== "noOuter";
const timeline = Deno.args.includes("timeline");
const tune = JSON.parse(Deno.env.get("SLUICE_TUNE") ?? "{}");
if (tune.callBytes) fp4ResidentTuning.callBytes = tune.callBytes;
if (tune.keptBytes) encodeStreamTuning.keptBytes = tune.keptBytes;
if (tune.inFlight) encodeStreamTuning.inFlight = tune.inFlight;
if (tune.pieceBytes) fp4GpuTuning.pieceBytes = tune.pieceBytes;

// The GPU is opened and the kernel built before the clock starts, as in bench/gpu_convert.ts.
await acquireGpu("gpu");
await (await createFp4Encoder("nvfp4", 64, { mode: "full", device: "gpu" }))
  .encode(new Float32Array(64));

/** Replaces `proto[name]` by `wrap(original)`. */
function patch(proto: object, name: string, wrap: (original: Method) => Method): void {
  const target = proto as Record<string, Method>;
  target[name] = wrap(target[name]!);
}

/** Calls in flight, as [tag, start, end] (ms). */
const spans: [string, number, number][] = [];
const inFlight = (proto: object, name: string, tag: string) =>
  patch(proto, name, (original) =>
    function (...args) {
      const start = performance.now();
      const r = original.apply(this, args);
      const end = () => spans.push([tag, start, performance.now()]);
      if (r instanceof Promise) r.then(end, () => {});
      else end();
      return r;
    });
inFlight(Fp4GpuEncoder.prototype, "encode", "gpu");
inFlight(Fp4GpuEncoder.prototype, "encodeScaled", "gpu");
inFlight(Deno.FsFile.prototype, "read", "read");

/** Time inside each synchronous WebGPU call (ms). */
const inside = new Map<string, number>();
const timed = (proto: object, name: string) =>
  patch(proto, name, (original) =>
    function (...args) {
      const start = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        inside.set(name, (inside.get(name) ?? 0) + performance.now() - start);
      }
    });
for (const name of ["writeBuffer", "submit"]) timed(GPUQueue.prototype, name);
for (const name of ["getMappedRange", "mapAsync", "unmap"]) timed(GPUBuffer.prototype, name);
for (const name of ["createBindGroup", "createCommandEncoder", "createBuffer"]) {
  timed(GPUDevice.prototype, name);
}
timed(GPUCommandEncoder.prototype, "finish");
const created = new Map<string, number>();
patch(GPUDevice.prototype, "createBuffer", (original) =>
  function (...args) {
    const { label, size } = args[0] as GPUBufferDescriptor;
    created.set(`${label} ${size} B`, (created.get(`${label} ${size} B`) ?? 0) + 1);
    return original.apply(this, args);
  });

/** utime + stime of /proc/<stat> in ms (10 ms ticks). */
function cpuMs(stat: string): number {
  const fields = Deno.readTextFileSync(stat).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const blocked: [number, number][] = [];
let last = performance.now();
const ticker = setInterval(() => {
  const now = performance.now();
  if (now - last > 3) blocked.push([last, now]);
  last = now;
}, 1);
const main0 = cpuMs("/proc/thread-self/stat"), process0 = cpuMs("/proc/self/stat");
const t0 = performance.now();
const stats = await convert({
  input: `${work}/model`,
  output: `${work}/trace.gguf`,
  type: "nvfp4",
  tokenizerPre: "llama-bpe",
  imatrix: `${work}/imatrix.gguf`,
  outerScale: outer,
  encode: { mode: "full", device: "gpu", ...(tune.workers ? { workers: tune.workers } : {}) },
});
const total = performance.now() - t0;
const mainMs = cpuMs("/proc/thread-self/stat") - main0;
clearInterval(ticker);
await Deno.remove(`${work}/trace.gguf`);

const sum = [...inside.values()].reduce((a, b) => a + b, 0);
console.log(
  `${outer ? "outer scale" : "no outer scale"}: ${(stats.bytesRead / 1e9).toFixed(2)} GB in ` +
    `${total.toFixed(0)} ms = ${
      (stats.bytesRead / 1e6 / total).toFixed(2)
    } GB/s; main thread CPU ` +
    `${mainMs} ms (process ${cpuMs("/proc/self/stat") - process0} ms); wall time inside WebGPU ` +
    `calls (CPU, or blocked on the GPU) ${sum.toFixed(0)} ms: ${
      [...inside].map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")
    }`,
);
console.log(`buffers created: ${[...created].map(([k, v]) => `${k} ×${v}`).join(", ")}`);
for (let b = 0; timeline && b * 25 < total; b++) {
  const lo = t0 + b * 25, hi = lo + 25;
  const busy = (tag: string) => spans.filter((s) => s[0] === tag && s[1] < hi && s[2] > lo).length;
  const ms = blocked.reduce((a, [s, e]) => a + Math.max(0, Math.min(e, hi) - Math.max(s, lo)), 0);
  console.log(
    `${String(b * 25).padStart(5)} ms: gpu ${busy("gpu")}, read ${busy("read")}, ` +
      `blocked ${ms.toFixed(0)} ms`,
  );
}
