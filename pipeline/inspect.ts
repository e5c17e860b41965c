/**
 * `inspect`: what a model folder / Hub repo would become (read from headers only), or what a
 * GGUF file holds.
 *
 * @module
 */
import { gguf } from "@huggingface/gguf";
import { plan, type PlanOptions } from "./convert.ts";
import { ggmlTypeById } from "./ggml_types.ts";
import type { GgufValue } from "./gguf_metadata.ts";

/** One row of the tensor table. */
export interface InspectTensor {
  readonly name: string;
  /** GGUF dims, ne[0] first. */
  readonly ne: readonly number[];
  readonly type: string;
  readonly bytes: number;
  /** The checkpoint tensor and dtype it comes from, for a model folder. */
  readonly source?: string;
}

/** What `inspect` reports. */
export interface InspectReport {
  readonly kind: "gguf" | "checkpoint";
  readonly architecture: string;
  /** Metadata rendered as short strings (long arrays summarized). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: readonly InspectTensor[];
  /** GGUF file size: actual for a GGUF, planned for a checkpoint. */
  readonly fileBytes: number;
  /** Checkpoint only: bytes of tensor data in the source, by dtype. */
  readonly sourceDtypes?: Readonly<Record<string, number>>;
}

function _short(value: unknown): string {
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const items = Array.from(value as ArrayLike<unknown>);
    const head = items.slice(0, 4).map((v) => JSON.stringify(v)).join(", ");
    return items.length > 4 ? `[${head}, … ${items.length} items]` : `[${head}]`;
  }
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

function _gv(value: GgufValue): string {
  return `${value.type === "array" ? `${value.itemType}[]` : value.type} ${_short(value.value)}`;
}

/** Inspects a GGUF file. */
export async function inspectGguf(path: string): Promise<InspectReport> {
  const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
  const stat = await Deno.stat(path);
  const md: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) md[k] = _short(v);
  return {
    kind: "gguf",
    architecture: String(metadata["general.architecture"] ?? "?"),
    metadata: md,
    tensors: tensorInfos.map((t) => {
      const type = ggmlTypeById(Number(t.dtype));
      const ne = t.shape.map(Number);
      const n = ne.reduce((a, b) => a * b, 1);
      return {
        name: t.name,
        ne,
        type: type?.name ?? `type ${t.dtype}`,
        bytes: type ? (n / type.blockSize) * type.typeSize : NaN,
      };
    }),
    fileBytes: stat.size,
  };
}

/** Inspects a model folder or Hub repo from its headers; nothing but headers is read. */
export async function inspectCheckpoint(
  input: string,
  options: PlanOptions = {},
): Promise<InspectReport> {
  const { plan: p } = await plan(input, options);
  const md: Record<string, string> = {};
  for (const [k, v] of p.metadata) md[k] = _gv(v);
  const dtypes: Record<string, number> = {};
  const tensors: InspectTensor[] = p.tensors.map((t, i) => {
    let source: string | undefined;
    if (t.origin.kind === "checkpoint") {
      const e = t.origin.entry;
      dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + e.end - e.start;
      source = `${e.name} ${e.dtype}[${e.shape}]`;
    }
    const row = { name: t.name, ne: t.ne, type: t.type.name, bytes: p.layout.tensorSizes[i]! };
    return source === undefined ? row : { ...row, source };
  });
  const quant = p.config.raw.quantization_config;
  if (quant !== undefined) md["(config) quantization_config"] = _short(JSON.stringify(quant));
  return {
    kind: "checkpoint",
    architecture: p.config.architecture,
    metadata: md,
    tensors,
    fileBytes: p.layout.fileSize,
    sourceDtypes: dtypes,
  };
}
