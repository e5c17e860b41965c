/**
 * The `sluice` command line: `convert` and `inspect`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { convert } from "./pipeline/convert.ts";
import { inspectCheckpoint, inspectGguf, type InspectReport } from "./pipeline/inspect.ts";
import { OUTPUT_TYPES, type TypeChoice } from "./pipeline/plan.ts";
import { formatBytes, type LogFormat, progressRenderer } from "./pipeline/progress.ts";
import type { HubSourceOptions } from "./stages/hub_source.ts";

const USAGE = `sluice — stream Hugging Face safetensors checkpoints into GGUF for llama.cpp

Usage:
  sluice convert <model-dir | hf:owner/name[@rev]> -o <out.gguf> [options]
  sluice inspect <file.gguf | model-dir | hf:owner/name[@rev]> [--type T] [--json]

Convert options:
  -o, --output FILE        output GGUF (written as FILE.partial, renamed when complete)
  -t, --type TYPE          type of 2-D weights: auto | f32 | f16 | bf16 | q8_0 (default auto:
                           BF16 for BF16 checkpoints, else F16). 1-D tensors and norms stay F32.
      --name NAME          general.name (default: the Hub repo id, else the folder's name)
      --tokenizer-pre NAME tokenizer.ggml.pre to use when the tokenizer is not in llama.cpp's table
      --chunk-size MIB     largest piece read at once (default 8)
      --log-format FORMAT  text (progress bar) | json (one line per tensor and phase);
                           default text on a terminal, json otherwise
  -h, --help               this help

Hub options (hf:owner/name[@revision] inputs; only headers and tensor ranges are fetched):
      --token TOKEN        access token for private/gated repos (default: $HF_TOKEN)
      --endpoint URL       Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)
      --connections N      range requests in flight (default 8)
      --max-memory MIB     read-ahead budget (default 256)

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
  if (t !== "auto" && !(OUTPUT_TYPES as readonly string[]).includes(t)) {
    throw new UsageError(`Cannot use --type ${value}: choose auto, ${OUTPUT_TYPES.join(", ")}`);
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

function hubOptions(values: Record<string, string | boolean | undefined>): HubSourceOptions {
  const hub: HubSourceOptions = {};
  if (typeof values.token === "string") hub.token = values.token;
  if (typeof values.endpoint === "string") hub.endpoint = values.endpoint;
  const connections = positiveNumber("connections", values.connections as string | undefined, 256);
  if (connections !== undefined) hub.connections = Math.round(connections);
  const memory = positiveNumber("max-memory", values["max-memory"] as string | undefined, 65536);
  if (memory !== undefined) hub.maxMemory = Math.round(memory * 1024 * 1024);
  return hub;
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
      const chunkMiB = values["chunk-size"] === undefined ? 8 : Number(values["chunk-size"]);
      if (!(chunkMiB > 0 && chunkMiB <= 1024)) {
        throw new UsageError(`Cannot use --chunk-size ${values["chunk-size"]}: give 1..1024 MiB`);
      }
      const controller = new AbortController();
      const onSignal = () =>
        controller.abort(new Error("Cannot finish as the run was interrupted"));
      Deno.addSignalListener("SIGINT", onSignal);
      try {
        await convert({
          ...common,
          input,
          output: values.output,
          chunkSize: Math.round(chunkMiB * 1024 * 1024),
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
