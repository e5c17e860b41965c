/**
 * The whole converter on a GPU machine: generates a BF16 llama (default 10 layers, ~0.95 GB),
 * writes an imatrix for every block weight, and times `convert()` to NVFP4 with the `full` scale
 * search on the GPU, with the default outer scales (found on the GPU as tensors stream in), with
 * them found by the pre-pass (a second read, as before issue #4) and with `--no-outer-scale`,
 * reporting GB/s of BF16 input. The anchor, in the same run, is reading alone: the same source
 * through the same row stages with nothing encoded or written, which bounds what the converter
 * can reach. Each contender runs in its own process (its own peak RSS), twice, interleaved; the
 * best time counts. A process opens the GPU and builds its kernels before its clock starts
 * (reported apart). Needs only the runtime npm packages (tokenizer, Hub client), not llama.cpp.
 *
 * deno task bench gpu [layers] [chunk MiB]   (or deno run -A bench/gpu_convert.ts [layers] ...)
 * (SLUICE_BENCH_DIR keeps the generated model between runs; SLUICE_CONTENDERS picks some, e.g.
 * 'read,outer'; SLUICE_CPUPROF=DIR writes each
 * contender's main-thread CPU profile there, as DIR/<contender>.cpuprofile; SLUICE_TUNE sets the
 * encode stage's and GPU shell's knobs in every contender, e.g. '{"inFlight": 16, "keptBytes":
 * 134217728, "callBytes": 33554432, "pieceBytes": 16777216}'; SLUICE_MODE=rtn|window changes the
 * scale search, to tell the kernel's share.)
 *
 * @module
 */
import { Session } from "node:inspector";
import { convert, plan } from "../pipeline/convert.ts";
import { peakRssBytes } from "../pipeline/memory.ts";
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { GpuAmax } from "../gpu/fp4/amax_gpu.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import { fp4GpuTimings, fp4GpuTuning } from "../gpu/fp4/encode_gpu.ts";
import { fp4ResidentTuning } from "../gpu/fp4/resident.ts";
import { encodeStreamTuning } from "../stages/encode_stream.ts";
import { QkPermuteStream } from "../stages/qk_permute_stream.ts";
import { planRanges, RowGroupStream } from "../stages/row_group_stream.ts";
import { encodeImatrixGguf, type ImatrixStats } from "../testing/imatrix_files.ts";
import { generateModel } from "../testing/synthetic_model.ts";

const hidden = 2048, ff = 5632;
const CONTENDERS = {
  read: "reading alone (anchor)",
  outer: "GPU, outer scale (default: found on the GPU)",
  prePass: "GPU, outer scale by the pre-pass (second read)",
  noOuter: "GPU, --no-outer-scale",
} as const;
type Contender = keyof typeof CONTENDERS;

interface Result {
  seconds: number;
  /** Time the thread was blocked in read-back map calls (Deno waits for the GPU there). */
  mapBlockedSeconds: number;
  bytes: number;
  initSeconds: number;
  peakRssBytes: number;
}

/** One contender in this process; prints its result as JSON. */
async function child(work: string, contender: Contender, chunkSize: number | undefined) {
  const tune = JSON.parse(Deno.env.get("SLUICE_TUNE") ?? "{}");
  if (tune.inFlight) encodeStreamTuning.inFlight = tune.inFlight;
  if (tune.keptBytes) encodeStreamTuning.keptBytes = tune.keptBytes;
  if (tune.callBytes) fp4ResidentTuning.callBytes = tune.callBytes;
  if (tune.pieceBytes) fp4GpuTuning.pieceBytes = tune.pieceBytes;
  const dir = `${work}/model`;
  const common = {
    type: "nvfp4",
    tokenizerPre: "llama-bpe",
    imatrix: `${work}/imatrix.gguf`,
  } as const;
  let t0 = performance.now();
  if (contender !== "read") {
    const gpu = (await acquireGpu("gpu"))!;
    const encoder = await createFp4Encoder("nvfp4", 64, { mode: "full", device: "gpu" });
    await encoder.encode(new Float32Array(64));
    (await GpuAmax.create(gpu)).release();
  }
  const initSeconds = (performance.now() - t0) / 1000;
  fp4GpuTuning.profile = true;
  const profileDir = Deno.env.get("SLUICE_CPUPROF");
  const profiler = profileDir ? await startProfiler() : null;
  t0 = performance.now();
  let bytes: number;
  let seconds: number;
  if (contender === "read") {
    const { source, plan: p } = await plan(dir, common);
    const ranges = planRanges(p.tensors);
    bytes = ranges.reduce((a, r) => a + r.end - r.start, 0);
    await source.readRanges(ranges, chunkSize ? { chunkSize } : {})
      .pipeThrough(new RowGroupStream(p.tensors))
      .pipeThrough(new QkPermuteStream(p.tensors))
      .pipeTo(new WritableStream({ write: (piece) => piece.release?.() }));
    seconds = (performance.now() - t0) / 1000;
  } else {
    const stats = await convert({
      ...common,
      input: dir,
      output: `${work}/out-${contender}.gguf`,
      outerScale: contender !== "noOuter",
      encode: {
        mode: (Deno.env.get("SLUICE_MODE") ?? "full") as Fp4SearchMode,
        device: "gpu",
        ...(contender === "prePass" ? { gpuOuterScaleBytes: 0 } : {}),
      },
      ...(chunkSize ? { chunkSize } : {}),
    });
    seconds = (performance.now() - t0) / 1000;
    bytes = stats.bytesRead;
    await Deno.remove(`${work}/out-${contender}.gguf`);
  }
  if (profiler) {
    await Deno.writeTextFile(`${profileDir}/${contender}.cpuprofile`, await profiler());
  }
  const result: Result = {
    seconds,
    mapBlockedSeconds: fp4GpuTimings.mapCallMs / 1000,
    bytes,
    initSeconds,
    peakRssBytes: peakRssBytes(),
  };
  console.log(JSON.stringify(result));
}

/** Starts V8's sampling profiler on this thread; the function returned stops it (JSON). */
async function startProfiler(): Promise<() => Promise<string>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, params, (e: Error | null, r: unknown) => e ? reject(e) : resolve(r))
    );
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 250 });
  await post("Profiler.start");
  return async () => {
    const { profile } = await post("Profiler.stop") as { profile: unknown };
    session.disconnect();
    return JSON.stringify(profile);
  };
}

async function generate(work: string, layers: number) {
  const dir = `${work}/model`;
  if (await Deno.stat(`${dir}/config.json`).then(() => true, () => false)) return;
  const t0 = performance.now();
  await generateModel(dir, {
    arch: "llama",
    seed: 5,
    hiddenSize: hidden,
    intermediateSize: ff,
    numLayers: layers,
    numHeads: 16,
    numKvHeads: 8,
    dtype: "BF16",
    maxShardBytes: 512 << 20,
  });
  console.log(`generated ${layers} layers in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Positive per-column importances for every block weight (as llama-imatrix would collect).
  const entries: ImatrixStats[] = [];
  for (let l = 0; l < layers; l++) {
    for (
      const [name, cols] of [
        ["attn_q", hidden],
        ["attn_k", hidden],
        ["attn_v", hidden],
        ["attn_output", hidden],
        ["ffn_gate", hidden],
        ["ffn_up", hidden],
        ["ffn_down", ff],
      ] as const
    ) {
      const sums = Float32Array.from(
        { length: cols },
        (_, i) => 100 * (1 + Math.sin(i * 0.37 + l)),
      );
      entries.push({ name: `blk.${l}.${name}.weight`, sums, counts: [100] });
    }
  }
  await Deno.writeFile(
    `${work}/imatrix.gguf`,
    encodeImatrixGguf({ entries, datasets: ["synthetic"], chunkCount: 1, chunkSize: 100 }),
  );
}

async function run(work: string, contender: Contender, chunk: string | undefined) {
  const args = ["run", "-A", import.meta.filename!, "--child", work, contender];
  const out = await new Deno.Command(Deno.execPath(), {
    args: chunk ? [...args, chunk] : args,
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${contender} failed`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!) as Result;
}

/** The parent: generates the model, runs each contender twice in its own process, reports. */
export async function benchGpuConvert(args: readonly string[]): Promise<void> {
  const layers = Number(args[0] ?? 10);
  const chunk = args[1];
  const keep = Deno.env.get("SLUICE_BENCH_DIR");
  const work = keep ?? await Deno.makeTempDir({ prefix: "sluice-gpu-convert-" });
  await Deno.mkdir(work, { recursive: true });
  await generate(work, layers);
  const picked = (Deno.env.get("SLUICE_CONTENDERS")?.split(",") ??
    Object.keys(CONTENDERS)) as Contender[];
  if (!picked.includes("read")) picked.unshift("read");
  const best = new Map<Contender, Result>();
  for (let round = 0; round < 2; round++) {
    for (const contender of picked) {
      const r = await run(work, contender, chunk);
      const old = best.get(contender);
      if (!old || r.seconds < old.seconds) best.set(contender, r);
    }
  }
  const anchor = best.get("read")!;
  const rate = (r: Result) => r.bytes / 1e9 / r.seconds;
  console.log(
    `chunk size: ${chunk ? `${chunk} MiB` : "the converter's default"}; tuning ${
      Deno.env.get("SLUICE_TUNE") ?? "default"
    }`,
  );
  for (const contender of picked) {
    const label = CONTENDERS[contender], r = best.get(contender)!;
    console.log(
      `${label}: ${(r.bytes / 1e9).toFixed(2)} GB BF16 in ${r.seconds.toFixed(2)} s = ` +
        `${rate(r).toFixed(2)} GB/s (${(rate(r) / rate(anchor)).toFixed(2)}× reading alone), ` +
        `peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB, GPU set-up before the clock ` +
        `${r.initSeconds.toFixed(2)} s, blocked in read-back maps ${
          r.mapBlockedSeconds.toFixed(2)
        } s`,
    );
  }
  if (!keep) await Deno.remove(work, { recursive: true });
}

if (import.meta.main && Deno.args[0] === "--child") {
  const chunk = Deno.args[3];
  await child(Deno.args[1]!, Deno.args[2] as Contender, chunk ? Number(chunk) << 20 : undefined);
} else if (import.meta.main) {
  await benchGpuConvert(Deno.args);
}
