/**
 * `convert()`: one streaming pass from a safetensors checkpoint to a GGUF file. Plans from
 * headers, then pipes source ranges → whole-row pieces → Q/K permutation → encoding → GGUF sink.
 *
 * @module
 */
import { type EncodeOptions, EncodeStream } from "../stages/encode_stream.ts";
import { fillOuterScales } from "../stages/amax_prepass.ts";
import { EncoderPool } from "../stages/encode/encoder_pool.ts";
import { planGpuOuterScales } from "../stages/encode/gpu_outer_scale.ts";
import type { Fp4FormatName } from "../gpu/fp4/formats.ts";
import type { TypeRules } from "./type_selection.ts";
import { type Imatrix, imatrixMetadata, readImatrix } from "./imatrix.ts";
import { GgufSink } from "../stages/gguf_sink.ts";
import { QkPermuteStream } from "../stages/qk_permute_stream.ts";
import { planRanges, RowGroupStream } from "../stages/row_group_stream.ts";
import { peakRssBytes } from "./memory.ts";
import {
  type ConversionPlan,
  planConversion,
  type PlannedTensor,
  type TypeChoice,
} from "./plan.ts";
import { openSource, readModelInputs } from "./model_inputs.ts";
import type { ModelSource } from "./source.ts";
import type { HubSourceEvent, HubSourceOptions } from "../stages/hub_source.ts";

/** Progress of a conversion, as data; the CLI decides how to show it. */
export type ConvertEvent =
  | {
    readonly type: "plan";
    readonly source: string;
    readonly tensors: number;
    readonly outputBytes: number;
    readonly weightType: string;
    readonly notes: readonly string[];
  }
  | {
    readonly type: "progress";
    readonly written: number;
    readonly total: number;
    readonly tensor: string;
    readonly tensorIndex: number;
  }
  | { readonly type: "done"; readonly stats: ConvertStats }
  | HubSourceEvent;

/** Options for {@linkcode convert}. */
export interface ConvertOptions extends PlanOptions {
  /** A model folder, or `hf:owner/name[@revision]`. Or a ready {@linkcode ModelSource}. */
  input: string | ModelSource;
  /** Output GGUF path. */
  output: string;
  /** FP4 scale search, Four-over-Six and device. */
  encode?: Omit<EncodeOptions, "imatrixFor">;
  /** Largest piece read at once, in bytes. @default 1 MiB from a local folder without GPU
   * encodes, else 8 MiB */
  chunkSize?: number;
  /** Receives progress events. */
  onEvent?: (event: ConvertEvent) => void;
  /** Stops the conversion; the partial file is removed. */
  signal?: AbortSignal;
}

/** What a conversion did. */
export interface ConvertStats {
  readonly output: string;
  readonly tensors: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** Of those, bytes the kernel copied straight from a local source file (unchanged tensors). */
  readonly kernelCopiedBytes: number;
  readonly seconds: number;
  /** Output bytes per second, in MB (10^6). */
  readonly mbPerSecond: number;
  readonly peakRssBytes: number;
}

/** Options for {@linkcode plan}. */
export interface PlanOptions {
  /** `--type` preset for 2-D weights. @default "auto" */
  type?: TypeChoice;
  /** Per-tensor type overrides (`--tensor-type`, `--output-tensor-type`, ...). */
  rules?: TypeRules;
  /** Quantize→dequantize 2-D attention/FFN weights in this FP4 format, written as floats. */
  simulate?: Fp4FormatName;
  /**
   * Per-tensor outer scales for NVFP4 (written as `<name>.scale`) and AMD-FP4, so block scales
   * use the whole scale grid: lower KLD in `deno task bench quality`. Costs a second read of those
   * tensors where FP4 encodes run on the CPU; on a GPU they wait there whole instead (see
   * `EncodeOptions.gpuOuterScaleBytes`). @default true
   */
  outerScale?: boolean;
  /** `general.name`. @default the Hub repo id, else the folder's name */
  name?: string;
  /** Forces `tokenizer.ggml.pre` when the tokenizer's hash is not in llama.cpp's table. */
  tokenizerPre?: string;
  /** Token, endpoint, connections and memory budget for `hf:` inputs. */
  hub?: HubSourceOptions;
  /**
   * A llama.cpp imatrix (GGUF or legacy `.dat`) weighting the FP4 scale search per input column,
   * as a path or an already read {@linkcode Imatrix}; its summary goes into `quantize.imatrix.*`.
   */
  imatrix?: string | Imatrix;
}

/** Reads the imatrix option once. */
async function _imatrix(option: string | Imatrix | undefined): Promise<Imatrix | null> {
  if (option === undefined) return null;
  if (typeof option !== "string") return option;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(option);
  } catch (e) {
    throw new Deno.errors.NotFound(`Cannot read imatrix ${option}: ${(e as Error).message}`);
  }
  return readImatrix(bytes, option);
}

/** Plans a conversion without reading tensor data (used by `inspect` and `convert`). */
export async function plan(
  input: string | ModelSource,
  options: PlanOptions = {},
): Promise<{ source: ModelSource; plan: ConversionPlan; imatrix: Imatrix | null }> {
  const source = typeof input === "string" ? await openSource(input, options.hub) : input;
  const inputs = await readModelInputs(source, options.tokenizerPre);
  const imatrix = await _imatrix(options.imatrix);
  return {
    source,
    plan: planConversion({
      ...inputs,
      name: options.name ?? inputs.name,
      type: options.type ?? "auto",
      ...(options.rules ? { rules: options.rules } : {}),
      ...(options.simulate ? { simulate: options.simulate } : {}),
      ...(imatrix ? { extraMetadata: imatrixMetadata(imatrix) } : {}),
      outerScale: options.outerScale ?? true,
    }),
    imatrix,
  };
}

/**
 * Local reads in 1 MiB pieces stay in the CPU cache from read to encode (2 GB BF16→BF16: 3.3–3.4 s
 * against 4.1–4.6 s in 8 MiB pieces; Q8_0 7.0–8.1 s against 8.5–8.7 s, with half the memory). GPU
 * encodes keep the source's bigger pieces, since each GPU round trip costs Deno ≥ 10 ms.
 */
const LOCAL_CPU_CHUNK = 1 << 20;

/**
 * Hub reads in 2 MiB pieces, for the same reason: bytes are still in the cache when they are
 * scanned and written (`deno task bench hub`: see stages/kernel_output.ts). Ad hoc CLI runs
 * against that bench's loopback Hub, three rounds: 4.2–5.6 s in 2 MiB pieces, 5.3–6.8 s in 8 MiB
 * and 5.3–5.4 s in 1 MiB, where the extra per-piece work shows; peak RSS 391–400 MiB against
 * 496–518 MiB in 8 MiB pieces.
 */
const HUB_CPU_CHUNK = 2 << 20;

function _defaultChunkSize(
  source: ModelSource,
  tensors: readonly PlannedTensor[],
  encode: EncodeOptions | undefined,
): number | undefined {
  const gpu = encode?.device !== "cpu" && tensors.some((t) => t.fp4 !== null);
  if (gpu) return undefined;
  return source.localPath ? LOCAL_CPU_CHUNK : HUB_CPU_CHUNK;
}

/**
 * Converts a checkpoint to GGUF in one streaming pass.
 * @throws on bad input, naming the file and tensor; no output file is left behind.
 */
export async function convert(options: ConvertOptions): Promise<ConvertStats> {
  const started = performance.now();
  // One pool of workers (started as jobs come) for the encodes.
  const pool = new EncoderPool(options.encode?.workers);
  try {
    return await _convert(options, started, pool);
  } finally {
    pool.close();
  }
}

async function _convert(
  options: ConvertOptions,
  started: number,
  pool: EncoderPool,
): Promise<ConvertStats> {
  const onEvent = options.onEvent;
  const hub: HubSourceOptions = onEvent ? { ...options.hub, onEvent } : { ...options.hub };
  const { source, plan: p, imatrix } = await plan(options.input, { ...options, hub });
  const encodeOptions: EncodeOptions = imatrix === null ? { ...options.encode, pool } : {
    ...options.encode,
    pool,
    // Experts (3-D) use one ne[0] slice per expert, as llama-quantize.
    imatrixFor: (t) => imatrix.weightsFor(t.name, t.ne[0]!, t.ne[2] ?? 1),
  };
  const names = p.tensors.map((t) => t.name);
  options.onEvent?.({
    type: "plan",
    source: source.label,
    tensors: p.tensors.length,
    outputBytes: p.layout.fileSize,
    weightType: p.weightType,
    notes: p.tensors.filter((t) => t.note).map((t) => `${t.name}: ${t.note}`),
  });
  const chunkSize = options.chunkSize ?? _defaultChunkSize(source, p.tensors, options.encode);
  // Where FP4 encodes run on the GPU, outer scales are found there as tensors stream in; the
  // pre-pass reads only the rest.
  const gpuOuterScales = await planGpuOuterScales(p.tensors, encodeOptions);
  await fillOuterScales(source, p.tensors.filter((_, i) => !gpuOuterScales.has(i)), {
    fourOverSix: options.encode?.fourOverSix ?? false,
    ...(chunkSize === undefined ? {} : { chunkSize }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const ranges = planRanges(p.tensors);
  let lastReport = 0;
  let kernelCopiedBytes = 0;
  const readOptions = chunkSize === undefined ? {} : { chunkSize };
  await source
    .readRanges(ranges, options.signal ? { ...readOptions, signal: options.signal } : readOptions)
    .pipeThrough(new RowGroupStream(p.tensors))
    // FP4 encoders read Q/K rows in rope order themselves (no copy on this thread).
    .pipeThrough(new QkPermuteStream(p.tensors, (t) => t.fp4 !== null))
    .pipeThrough(new EncodeStream(p.tensors, encodeOptions, gpuOuterScales))
    .pipeTo(
      new GgufSink(options.output, p.layout, {
        names,
        ...(source.localPath ? { localPath: (path: string) => source.localPath!(path) } : {}),
        onDone: (s) => kernelCopiedBytes = s.kernelCopiedBytes,
        onProgress: (written, tensor) => {
          const now = performance.now();
          if (now - lastReport < 100 && written < p.layout.fileSize) return;
          lastReport = now;
          options.onEvent?.({
            type: "progress",
            written,
            total: p.layout.fileSize,
            tensor: names[tensor]!,
            tensorIndex: tensor,
          });
        },
      }),
      options.signal ? { signal: options.signal } : {},
    );
  const seconds = (performance.now() - started) / 1000;
  const stats: ConvertStats = {
    output: options.output,
    tensors: p.tensors.length,
    bytesRead: ranges.reduce((a, r) => a + r.end - r.start, 0),
    bytesWritten: p.layout.fileSize,
    kernelCopiedBytes,
    seconds,
    mbPerSecond: p.layout.fileSize / 1e6 / seconds,
    peakRssBytes: peakRssBytes(),
  };
  options.onEvent?.({ type: "done", stats });
  return stats;
}
