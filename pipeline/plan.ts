/**
 * Plans a conversion from headers alone: every output tensor's name, shape, type, source bytes
 * and file offset, and the complete GGUF header, before any tensor byte is read.
 *
 * @module
 */
import {
  architectureOf,
  mapTensor,
  type RowPermutation,
  UnsupportedModelError,
} from "./architectures.ts";
import { GGML_TYPES, type GgmlTypeInfo } from "./ggml_types.ts";
import { fp4Format, type Fp4FormatName } from "../gpu/fp4/formats.ts";
import {
  presetFileType,
  selectTensorType,
  type TypePreset,
  type TypeRules,
} from "./type_selection.ts";
import { type GgufLayout, layoutGguf } from "./gguf_header.ts";
import type { GgufMetadata } from "./gguf_metadata.ts";
import type { ModelConfig } from "./model_config.ts";
import { llama3RopeFactors, modelMetadata } from "./model_metadata.ts";
import {
  SafetensorsError,
  type SafetensorsHeader,
  type SafetensorsTensor,
} from "./safetensors_header.ts";

/** `--type`: a preset, or `auto` (BF16 for BF16 checkpoints, else F16, as llama.cpp). */
export type TypeChoice = TypePreset;
/** A resolved preset. */
export type OutputType = Exclude<TypePreset, "auto">;

/** How a tensor's values are FP4-encoded, when they are. */
export interface Fp4Encoding {
  readonly format: Fp4FormatName;
  /** Quantize and dequantize, writing the float type of the tensor (`--simulate`). */
  readonly simulate: boolean;
  /**
   * The per-tensor outer scale (`[0]`, 1 until filled in): by the amax pre-pass before any byte
   * is written, or on the GPU once the tensor's last piece is in (before its `.scale` side
   * tensor, which comes after every checkpoint tensor, is written). For real files it is also
   * the value of that `.scale` tensor.
   */
  readonly outerScale: Float32Array | null;
}

/** Where a planned tensor's values come from. */
export type TensorOrigin =
  | { readonly kind: "checkpoint"; readonly file: string; readonly entry: SafetensorsTensor }
  | { readonly kind: "generated"; readonly values: Float32Array };

/** One tensor of the output file. */
export interface PlannedTensor {
  readonly name: string;
  /** GGUF dims, ne[0] (contiguous) first. */
  readonly ne: readonly number[];
  readonly type: GgmlTypeInfo;
  readonly origin: TensorOrigin;
  readonly permutation: RowPermutation;
  /** FP4 encoding (real or simulated), or null. */
  readonly fp4: Fp4Encoding | null;
  /** Why the type differs from the requested one, for the log. */
  readonly note: string | null;
}

/** Elements of a planned tensor (the product of its dims). */
export function tensorElements(t: PlannedTensor): number {
  return t.ne.reduce((a, b) => a * b, 1);
}

/** Everything needed to write the file. */
export interface ConversionPlan {
  readonly config: ModelConfig;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly PlannedTensor[];
  readonly layout: GgufLayout;
  /** The preset, with `auto` resolved. */
  readonly weightType: OutputType;
}

/** Inputs of {@linkcode planConversion}. */
export interface PlanInputs {
  readonly config: ModelConfig;
  readonly headers: readonly SafetensorsHeader[];
  /** `general.name`. */
  readonly name: string;
  readonly type: TypeChoice;
  /** Per-tensor overrides. */
  readonly rules?: TypeRules;
  /** Quantize→dequantize this FP4 format into 2-D attention/FFN weights, written as floats. */
  readonly simulate?: Fp4FormatName;
  /** Tokenizer metadata, appended after the model keys. */
  readonly tokenizer: GgufMetadata;
  /** Extra metadata (e.g. `quantize.imatrix.*`), appended last. */
  readonly extraMetadata?: GgufMetadata;
  /** Give NVFP4/AMD-FP4 tensors a per-tensor outer scale (written as `<name>.scale` for NVFP4). */
  readonly outerScale?: boolean;
}

function _sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Resolves `auto` from the first 2-D tensor's dtype, as llama.cpp's converter does. */
export function resolveWeightType(
  type: TypeChoice,
  headers: readonly SafetensorsHeader[],
): OutputType {
  if (type !== "auto") return type;
  for (const h of headers) {
    for (const t of h.tensors) {
      if (t.shape.length < 2) continue;
      if (t.dtype === "BF16") return "bf16";
      if (t.dtype === "F16") return "f16";
    }
  }
  return "f16";
}

const FP4_FORMAT_OF_TYPE: Readonly<Record<number, Fp4FormatName>> = {
  39: "mxfp4",
  40: "nvfp4",
  100: "q4_0_rocmfp4",
  101: "q4_0_rocmfp4_fast",
};

/** Simulation writes floats; only the float presets can carry it. */
function _simulationCarrier(preset: OutputType): "f32" | "f16" | "bf16" {
  if (preset === "f32" || preset === "f16" || preset === "bf16") return preset;
  throw new TypeError(
    `Cannot simulate FP4 with --type ${preset}: simulated weights are written as f32, f16 or bf16`,
  );
}

function _choose(
  name: string,
  ne: readonly number[],
  preset: OutputType,
  inputs: PlanInputs,
): { type: GgmlTypeInfo; fp4: Fp4Encoding | null; note: string | null } {
  const decision = selectTensorType(name, ne, preset, inputs.rules);
  const simulate = inputs.simulate;
  if (simulate !== undefined) {
    const format = fp4Format(simulate);
    const weight = ne.length >= 2 && name.endsWith(".weight") && !name.endsWith("_norm.weight") &&
      name !== "token_embd.weight" && name !== "output.weight";
    if (weight && ne[0]! % format.blockSize === 0) {
      return {
        type: decision.type,
        fp4: { format: simulate, simulate: true, outerScale: _outer(simulate, inputs) },
        note: null,
      };
    }
    if (weight) {
      return {
        ...decision,
        fp4: null,
        note: `row length ${ne[0]} is not a multiple of ${format.label}'s block of ` +
          `${format.blockSize}: not simulated`,
      };
    }
  }
  const format = FP4_FORMAT_OF_TYPE[decision.type.id];
  return {
    ...decision,
    fp4: format ? { format, simulate: false, outerScale: _outer(format, inputs) } : null,
  };
}

/** Formats with an outer scale get a slot for it when asked to. */
function _outer(format: Fp4FormatName, inputs: PlanInputs): Float32Array | null {
  const has = format === "nvfp4" || format === "amdfp4";
  return inputs.outerScale && has ? new Float32Array([1]) : null;
}

/** Tensors every model of the supported families must have, by HF name. */
function _requiredTensors(config: ModelConfig, qkNorm: boolean): string[] {
  const names = ["model.embed_tokens.weight", "model.norm.weight"];
  const roles = [
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
  ];
  if (qkNorm) roles.push("self_attn.q_norm.weight", "self_attn.k_norm.weight");
  for (let i = 0; i < config.layers; i++) {
    for (const r of roles) names.push(`model.layers.${i}.${r}`);
  }
  return names;
}

/**
 * Plans the output file.
 * @throws {UnsupportedModelError} for an unknown architecture or tensor, or a missing tensor.
 * @throws {SafetensorsError} for a tensor whose shape contradicts config.json.
 */
export function planConversion(inputs: PlanInputs): ConversionPlan {
  const { config, headers } = inputs;
  const spec = architectureOf(config);
  const weightType = resolveWeightType(inputs.type, headers);
  if (inputs.simulate !== undefined) _simulationCarrier(weightType);
  const tensors: PlannedTensor[] = [];
  const seen = new Map<string, string>();
  for (const h of headers) {
    const ordered = [...h.tensors].sort((a, b) => a.start - b.start);
    for (const entry of ordered) {
      const mapped = mapTensor(spec, config, entry.name);
      if (mapped === null) continue;
      if (seen.has(entry.name)) {
        throw new SafetensorsError(
          h.file,
          entry.name,
          `Cannot use tensor also in ${seen.get(entry.name)}`,
        );
      }
      seen.set(entry.name, h.file);
      if (!_sameShape(entry.shape, mapped.expectedShape)) {
        throw new SafetensorsError(
          h.file,
          entry.name,
          `Cannot convert shape [${entry.shape}] as config.json implies [${mapped.expectedShape}]`,
        );
      }
      const ne = [...entry.shape].reverse();
      const { type, fp4, note } = _choose(mapped.name, ne, weightType, inputs);
      tensors.push({
        name: mapped.name,
        ne,
        type,
        origin: { kind: "checkpoint", file: h.file, entry },
        permutation: mapped.permutation,
        fp4,
        note,
      });
    }
  }
  for (const name of _requiredTensors(config, spec.qkNorm)) {
    if (!seen.has(name)) {
      throw new UnsupportedModelError(`Cannot convert as the checkpoint has no tensor ${name}`);
    }
  }
  // NVFP4 outer scales travel as llama.cpp's optional F32 `<name>.scale` tensors. Generated
  // tensors come after every checkpoint tensor, in the order the stream emits them.
  for (const t of [...tensors]) {
    if (t.fp4?.outerScale && !t.fp4.simulate && t.name.endsWith(".weight")) {
      tensors.push({
        name: `${t.name.slice(0, -".weight".length)}.scale`,
        ne: [1],
        type: GGML_TYPES.f32,
        origin: { kind: "generated", values: t.fp4.outerScale },
        permutation: null,
        fp4: null,
        note: null,
      });
    }
  }
  const ropeFactors = spec.gguf === "llama" ? llama3RopeFactors(config) : null;
  if (ropeFactors) {
    tensors.push({
      name: "rope_freqs.weight",
      ne: [ropeFactors.length],
      type: GGML_TYPES.f32,
      origin: { kind: "generated", values: ropeFactors },
      permutation: null,
      fp4: null,
      note: null,
    });
  }
  const metadata = modelMetadata(config, spec, {
    name: inputs.name,
    fileType: presetFileType(weightType),
  });
  for (const [k, v] of inputs.tokenizer) metadata.set(k, v);
  for (const [k, v] of inputs.extraMetadata ?? []) metadata.set(k, v);
  const layout = layoutGguf(metadata, tensors);
  return { config, metadata, tensors, layout, weightType };
}
