/**
 * The `sluice` command line: `convert` and `inspect`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { convert } from "./pipeline/convert.ts";
import { inspectCheckpoint, inspectGguf, type InspectReport } from "./pipeline/inspect.ts";
import type { TypeChoice } from "./pipeline/plan.ts";
import {
  parseTensorTypeRule,
  ruleType,
  TYPE_PRESETS,
  type TypeRules,
} from "./pipeline/type_selection.ts";
import type { Fp4FormatName } from "./gpu/fp4/formats.ts";
import type { EncodeOptions } from "./stages/encode_stream.ts";

/** `--max-memory` default, MiB: the whole run's budget. */
const DEFAULT_MAX_MEMORY_MIB = 512;
/** What the process needs besides Hub read-ahead, MiB (measured by `deno task bench hub`). */
const PROCESS_RESERVE_MIB = 320;

/** The scale search used when --scale-search is not given (see README: measured by KLD). */
const DEFAULT_SCALE_SEARCH = "window";
import { formatBytes, type LogFormat, progressRenderer } from "./pipeline/progress.ts";
import type { HubSourceOptions } from "./stages/hub_source.ts";

const USAGE = `sluice — stream Hugging Face safetensors checkpoints into GGUF for llama.cpp

Usage:
  sluice convert <model-dir | hf:owner/name[@rev]> -o <out.gguf> [options]
  sluice inspect <file.gguf | model-dir | hf:owner/name[@rev]> [--type T] [--json]

Convert options:
  -o, --output FILE        output GGUF (written as FILE.partial, renamed when complete)
  -t, --type TYPE          preset for 2-D weights (1-D tensors and norms always stay F32):
                           auto (default: BF16 for BF16 checkpoints, else F16) | f32 | f16 | bf16
                           | q8_0 | nvfp4 (attention/FFN NVFP4, embeddings/output Q8_0)
                           | mxfp4_moe (3-D experts MXFP4, rest Q8_0)
                           | rocmfp4 | rocmfp4_fast (EXPERIMENTAL: types 100/101 load only in the
                             ROCmFPX llama.cpp fork, not in stock llama.cpp)
      --tensor-type RE=T   type T for tensors whose GGUF name matches RE (first match wins; may
                           repeat); T: f32 f16 bf16 q8_0 nvfp4 mxfp4 q4_0_rocmfp4 q4_0_rocmfp4_fast
      --output-tensor-type T, --token-embedding-type T
                           type of output.weight / token_embd.weight
      --simulate FORMAT    quantize and dequantize 2-D attention/FFN weights in an FP4 format
                           (nvfp4 | mxfp4 | q4_0_rocmfp4 | q4_0_rocmfp4_fast | amdfp4) and write
                           them as --type (f32/f16/bf16), so stock llama.cpp can measure quality
      --scale-search MODE  FP4 block-scale choice: rtn (ggml's rule) | window | full
                           (default window: imatrix-weighted error search, see README)
      --window N           codes tried each side of the rtn scale in window mode (default 12)
      --four-over-six      also try mapping each block's max to 4 instead of 6
      --no-outer-scale     skip the per-tensor F32 outer scale of NVFP4 (<name>.scale, which
                           llama.cpp multiplies in) and AMD-FP4. On by default (lower KLD in
                           deno task bench quality), it reads those tensors twice
      --device DEVICE      FP4 kernels on auto (WebGPU when present) | gpu | cpu
      --imatrix FILE       llama.cpp imatrix (GGUF or legacy .dat) weighting the FP4 scale search
      --imatrix-weighting W  column (per input column, as llama.cpp PR #25153) | kquant
                           (imatrix·sqrt(σ²+x²), llama.cpp's K-quant rule); default: per format
      --name NAME          general.name (default: the Hub repo id, else the folder's name)
      --tokenizer-pre NAME tokenizer.ggml.pre to use when the tokenizer is not in llama.cpp's table
      --chunk-size MIB     largest piece read at once (default 1 from a local folder
                           without GPU encodes, else 8)
      --log-format FORMAT  text (progress bar) | json (one line per tensor and phase);
                           default text on a terminal, json otherwise
  -h, --help               this help

Hub options (hf:owner/name[@revision] inputs; only headers and tensor ranges are fetched):
      --token TOKEN        access token for private/gated repos (default: $HF_TOKEN)
      --endpoint URL       Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)
      --connections N      range requests in flight (default 8)
      --max-memory MIB     memory budget of the whole run (default 512): the Hub read-ahead gets
                           what is left after ~320 MiB for the process itself (at least 64 MiB)

Supported architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM.
Exit status: 0 on success, 1 on an error (the message names the file and tensor), 2 on bad usage.
`;

class UsageError extends Error {}

const encoder = new TextEncoder();
const stderr = {
  write: (text: string) => Deno.stderr.writeSync(encoder.encode(text)),
  isTerminal: Deno.stderr.isTerminal(),
};
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(text));

function typeChoice(value: string | undefined): TypeChoice {
  const t = (value ?? "auto").toLowerCase();
  if (!(TYPE_PRESETS as readonly string[]).includes(t)) {
    throw new UsageError(`Cannot use --type ${value}: choose ${TYPE_PRESETS.join(", ")}`);
  }
  return t as TypeChoice;
}

function positiveNumber(flag: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0 && n <= max)) {
    throw new UsageError(`Cannot use --${flag} ${value}: give a number in 1..${max}`);
  }
  return n;
}

function hubOptions(values: Record<string, unknown>): HubSourceOptions {
  const hub: HubSourceOptions = {};
  if (typeof values.token === "string") hub.token = values.token;
  if (typeof values.endpoint === "string") hub.endpoint = values.endpoint;
  const connections = positiveNumber("connections", values.connections as string | undefined, 256);
  if (connections !== undefined) hub.connections = Math.round(connections);
  const memory = positiveNumber("max-memory", values["max-memory"] as string | undefined, 65536) ??
    DEFAULT_MAX_MEMORY_MIB;
  // The budget is for the process: the runtime, tokenizer, pieces in the pipeline and garbage
  // not yet collected take about PROCESS_RESERVE_MIB; read-ahead gets the rest.
  hub.maxMemory = Math.max(64, Math.round(memory - PROCESS_RESERVE_MIB)) * 1024 * 1024;
  return hub;
}

function typeRules(values: Record<string, unknown>): TypeRules {
  try {
    const tensorTypes = ((values["tensor-type"] ?? []) as string[]).map(parseTensorTypeRule);
    const out = values["output-tensor-type"] as string | undefined;
    const embd = values["token-embedding-type"] as string | undefined;
    return {
      tensorTypes,
      ...(out === undefined ? {} : { outputType: ruleType("--output-tensor-type", out) }),
      ...(embd === undefined
        ? {}
        : { tokenEmbeddingType: ruleType("--token-embedding-type", embd) }),
    };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const FP4_NAMES = ["nvfp4", "mxfp4", "q4_0_rocmfp4", "q4_0_rocmfp4_fast", "amdfp4"] as const;

function fp4FormatName(text: string): Fp4FormatName {
  const t = text.toLowerCase().replace("amd-fp4", "amdfp4");
  if (!(FP4_NAMES as readonly string[]).includes(t)) {
    throw new UsageError(`Cannot simulate ${text}: choose ${FP4_NAMES.join(", ")}`);
  }
  return t as Fp4FormatName;
}

function encodeOptions(values: Record<string, unknown>): Omit<EncodeOptions, "imatrixFor"> {
  const mode = (values["scale-search"] as string | undefined) ?? DEFAULT_SCALE_SEARCH;
  if (mode !== "rtn" && mode !== "window" && mode !== "full") {
    throw new UsageError(`Cannot use --scale-search ${mode}: choose rtn, window or full`);
  }
  const device = (values.device as string | undefined) ?? "auto";
  if (device !== "auto" && device !== "gpu" && device !== "cpu") {
    throw new UsageError(`Cannot use --device ${device}: choose auto, gpu or cpu`);
  }
  const window = values.window === undefined
    ? 12
    : positiveNumber("window", values.window as string, 255) ?? 12;
  return {
    mode,
    window: Math.round(window),
    device,
    fourOverSix: values["four-over-six"] === true,
  };
}

function renderReport(r: InspectReport): string {
  const lines = [`${r.kind === "gguf" ? "GGUF file" : "checkpoint"}: ${r.architecture}`];
  if (r.sourceDtypes) {
    const mix = Object.entries(r.sourceDtypes).map(([d, b]) => `${d} ${formatBytes(b)}`);
    lines.push(`source dtypes: ${mix.join(", ")}`);
  }
  lines.push("", "metadata:");
  for (const [k, v] of Object.entries(r.metadata)) lines.push(`  ${k} = ${v}`);
  lines.push("", "tensors:");
  const nameWidth = Math.max(...r.tensors.map((t) => t.name.length), 4);
  for (const t of r.tensors) {
    lines.push(
      `  ${t.name.padEnd(nameWidth)}  ${`[${t.ne.join(", ")}]`.padEnd(20)} ${t.type.padEnd(6)} ${
        formatBytes(t.bytes).padStart(10)
      }${t.source ? `  ← ${t.source}` : ""}`,
    );
  }
  lines.push(
    "",
    `${r.kind === "gguf" ? "file size" : "planned GGUF size"}: ${
      formatBytes(r.fileBytes)
    } (${r.fileBytes} bytes)`,
  );
  return lines.join("\n") + "\n";
}

async function run(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    print(USAGE);
    return command === undefined ? 2 : 0;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      type: { type: "string", short: "t" },
      "tokenizer-pre": { type: "string" },
      name: { type: "string" },
      "tensor-type": { type: "string", multiple: true },
      "output-tensor-type": { type: "string" },
      "token-embedding-type": { type: "string" },
      simulate: { type: "string" },
      "scale-search": { type: "string" },
      window: { type: "string" },
      "four-over-six": { type: "boolean" },
      "no-outer-scale": { type: "boolean" },
      device: { type: "string" },
      imatrix: { type: "string" },
      "imatrix-weighting": { type: "string" },
      "chunk-size": { type: "string" },
      "log-format": { type: "string" },
      json: { type: "boolean" },
      token: { type: "string" },
      endpoint: { type: "string" },
      connections: { type: "string" },
      "max-memory": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    print(USAGE);
    return 0;
  }
  const input = positionals[0];
  if (input === undefined || positionals.length > 1) {
    throw new UsageError(`Cannot run ${command}: expected one model or file argument`);
  }
  const type = typeChoice(values.type);
  const hub = hubOptions(values);
  const common = {
    type,
    hub,
    rules: typeRules(values),
    ...(values.simulate === undefined ? {} : { simulate: fp4FormatName(values.simulate) }),
    ...(values.imatrix === undefined ? {} : { imatrix: values.imatrix }),
    ...(values["no-outer-scale"] ? { outerScale: false } : {}),
    ...(values["tokenizer-pre"] === undefined ? {} : { tokenizerPre: values["tokenizer-pre"] }),
    ...(values.name === undefined ? {} : { name: values.name }),
  };
  switch (command) {
    case "convert": {
      if (!values.output) throw new UsageError("Cannot convert without -o <out.gguf>");
      const format = (values["log-format"] ?? (stderr.isTerminal ? "text" : "json")) as LogFormat;
      if (format !== "text" && format !== "json") {
        throw new UsageError(`Cannot use --log-format ${format}: choose text or json`);
      }
      // Unset, convert() picks the piece size for the run (small for local CPU runs, big for GPU).
      const chunkMiB = values["chunk-size"] === undefined ? null : Number(values["chunk-size"]);
      if (chunkMiB !== null && !(chunkMiB > 0 && chunkMiB <= 1024)) {
        throw new UsageError(`Cannot use --chunk-size ${values["chunk-size"]}: give 1..1024 MiB`);
      }
      const controller = new AbortController();
      const onSignal = () =>
        controller.abort(new Error("Cannot finish as the run was interrupted"));
      Deno.addSignalListener("SIGINT", onSignal);
      try {
        await convert({
          ...common,
          encode: encodeOptions(values),
          input,
          output: values.output,
          ...(chunkMiB === null ? {} : { chunkSize: Math.round(chunkMiB * 1024 * 1024) }),
          onEvent: progressRenderer(format, stderr),
          signal: controller.signal,
        });
      } finally {
        Deno.removeSignalListener("SIGINT", onSignal);
      }
      return 0;
    }
    case "inspect": {
      const report = input.endsWith(".gguf")
        ? await inspectGguf(input)
        : await inspectCheckpoint(input, common);
      print(values.json ? JSON.stringify(report, null, 2) + "\n" : renderReport(report));
      return 0;
    }
    default:
      throw new UsageError(`Cannot run unknown command ${command}: use convert or inspect`);
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await run(Deno.args);
  } catch (e) {
    const usage = e instanceof UsageError ||
      (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    stderr.write(`sluice: error: ${(e as Error).message}\n`);
    if (usage) stderr.write("Run 'sluice --help' for usage.\n");
    code = usage ? 2 : 1;
  }
  Deno.exit(code);
}
