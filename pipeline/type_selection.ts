/**
 * Chooses each tensor's output type the way `llama-quantize` does: a preset gives the default
 * for 2-D weights, user rules (`--tensor-type REGEX=TYPE`, `--output-tensor-type`,
 * `--token-embedding-type`) override it, 1-D tensors and norms stay F32, and a row length that
 * does not divide into the type's blocks falls back to Q8_0 (or F16), with a note for the log.
 *
 * @module
 */
import { GGML_TYPES, type GgmlTypeInfo, type GgmlTypeName, LLAMA_FTYPE } from "./ggml_types.ts";

/** `--type` presets. */
export const TYPE_PRESETS = [
  "auto",
  "f32",
  "f16",
  "bf16",
  "q8_0",
  "nvfp4",
  "mxfp4_moe",
  "rocmfp4",
  "rocmfp4_fast",
] as const;
/** A `--type` preset. */
export type TypePreset = (typeof TYPE_PRESETS)[number];

/** Types a rule may name (`--tensor-type`, `--output-tensor-type`, `--token-embedding-type`). */
export const RULE_TYPES = [
  "f32",
  "f16",
  "bf16",
  "q8_0",
  "nvfp4",
  "mxfp4",
  "q4_0_rocmfp4",
  "q4_0_rocmfp4_fast",
] as const satisfies readonly GgmlTypeName[];
/** A type a rule may name. */
export type RuleType = (typeof RULE_TYPES)[number];

/** User overrides, first matching `tensorTypes` rule wins (as llama-quantize's regex_search). */
export interface TypeRules {
  readonly tensorTypes?: readonly (readonly [RegExp, RuleType])[];
  readonly outputType?: RuleType;
  readonly tokenEmbeddingType?: RuleType;
}

/** What {@linkcode selectTensorType} decided. */
export interface TypeDecision {
  readonly type: GgmlTypeInfo;
  /** Why the type is not the one asked for, or null. */
  readonly note: string | null;
}

/** What a preset gives attention/FFN weights, embeddings and output. */
interface _PresetRule {
  readonly weights: GgmlTypeName;
  readonly embeddings: GgmlTypeName;
  readonly experts3d?: GgmlTypeName;
}

const PRESET_RULES: Readonly<Record<Exclude<TypePreset, "auto">, _PresetRule>> = {
  f32: { weights: "f32", embeddings: "f32" },
  f16: { weights: "f16", embeddings: "f16" },
  bf16: { weights: "bf16", embeddings: "bf16" },
  q8_0: { weights: "q8_0", embeddings: "q8_0" },
  // As llama.cpp PR #25153: 2-D attention/FFN weights NVFP4, token_embd and output Q8_0.
  nvfp4: { weights: "nvfp4", embeddings: "q8_0" },
  // As llama-quantize's MXFP4_MOE: only 3-D expert tensors MXFP4, everything else Q8_0.
  mxfp4_moe: { weights: "q8_0", embeddings: "q8_0", experts3d: "mxfp4" },
  rocmfp4: { weights: "q4_0_rocmfp4", embeddings: "q8_0" },
  rocmfp4_fast: { weights: "q4_0_rocmfp4_fast", embeddings: "q8_0" },
};

/** `general.file_type` for a preset (llama_ftype; ROCmFPX fork numbers for ROCmFP4). */
export function presetFileType(preset: Exclude<TypePreset, "auto">): number {
  switch (preset) {
    case "rocmfp4":
      return 100;
    case "rocmfp4_fast":
      return 103;
    default:
      return LLAMA_FTYPE[preset];
  }
}

/** True for the FP4 ggml types Sluice encodes. */
export function isFp4Type(type: GgmlTypeInfo): boolean {
  return [39, 40, 100, 101].includes(type.id);
}

function _fallback(name: string, ne0: number, wanted: GgmlTypeInfo): TypeDecision {
  for (const next of [GGML_TYPES.q8_0, GGML_TYPES.f16]) {
    if (ne0 % next.blockSize === 0) {
      return {
        type: next,
        note: `row length ${ne0} is not a multiple of ${wanted.name}'s block of ` +
          `${wanted.blockSize}: ${next.name} instead`,
      };
    }
  }
  throw new RangeError(`Cannot choose a type for ${name}`);
}

/**
 * Chooses the output type of one tensor.
 * @param name GGUF tensor name
 * @param ne GGUF dims (ne[0] first)
 * @param preset the resolved preset (not `auto`)
 */
export function selectTensorType(
  name: string,
  ne: readonly number[],
  preset: Exclude<TypePreset, "auto">,
  rules: TypeRules = {},
): TypeDecision {
  if (ne.length < 2 || name.endsWith("_norm.weight") || !name.endsWith(".weight")) {
    return { type: GGML_TYPES.f32, note: null };
  }
  const rule = PRESET_RULES[preset];
  let wanted: GgmlTypeName;
  if (name === "token_embd.weight" && rules.tokenEmbeddingType) {
    wanted = rules.tokenEmbeddingType;
  } else if (name === "output.weight" && rules.outputType) {
    wanted = rules.outputType;
  } else {
    const override = rules.tensorTypes?.find(([re]) => re.test(name));
    if (override) wanted = override[1];
    else if (name === "token_embd.weight" || name === "output.weight") wanted = rule.embeddings;
    else if (rule.experts3d && ne.length >= 3 && ne[2]! > 1) wanted = rule.experts3d;
    else wanted = rule.weights;
  }
  const type = GGML_TYPES[wanted];
  if (ne[0]! % type.blockSize !== 0) return _fallback(name, ne[0]!, type);
  return { type, note: null };
}

/** Parses `REGEX=TYPE` for `--tensor-type`. */
export function parseTensorTypeRule(text: string): readonly [RegExp, RuleType] {
  const at = text.lastIndexOf("=");
  const type = text.slice(at + 1).toLowerCase();
  if (at <= 0 || !(RULE_TYPES as readonly string[]).includes(type)) {
    throw new TypeError(
      `Cannot read --tensor-type ${text}: expected REGEX=TYPE with TYPE one of ${
        RULE_TYPES.join(", ")
      }`,
    );
  }
  return [new RegExp(text.slice(0, at)), type as RuleType];
}

/** Narrows a string to a rule type. */
export function ruleType(flag: string, text: string): RuleType {
  const t = text.toLowerCase();
  if (!(RULE_TYPES as readonly string[]).includes(t)) {
    throw new TypeError(`Cannot use ${flag} ${text}: choose one of ${RULE_TYPES.join(", ")}`);
  }
  return t as RuleType;
}
