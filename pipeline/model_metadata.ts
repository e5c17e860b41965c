/**
 * The `general.*` and `<arch>.*` metadata llama.cpp's converter writes for dense llama/qwen
 * models, with the exact GGUF value types llama.cpp's loader checks.
 *
 * @module
 */
import type { ArchitectureSpec } from "./architectures.ts";
import { type GgufMetadata, gv } from "./gguf_metadata.ts";
import { intParam, type ModelConfig, ModelConfigError } from "./model_config.ts";

/** `GGML_QNT_VERSION`. */
const QUANTIZATION_VERSION = 2;

/** Options for {@linkcode modelMetadata}. */
export interface ModelMetadataOptions {
  /** `general.name`: the directory name or the Hub repo id. */
  name: string;
  /** `general.file_type` (a `llama_ftype`). */
  fileType: number;
}

function _number(raw: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ModelConfigError(`Cannot read config.json ${key} as a number: ${JSON.stringify(v)}`);
  }
  return v;
}

/** rope parameters from `rope_parameters` or `rope_scaling`, with `rope_theta` mirrored in. */
export function ropeParameters(raw: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const params = { ...(raw.rope_parameters ?? raw.rope_scaling ?? {}) as Record<string, unknown> };
  if (params.rope_type === undefined && params.type !== undefined) params.rope_type = params.type;
  if (params.rope_theta === undefined && raw.rope_theta !== undefined) {
    params.rope_theta = raw.rope_theta;
  }
  return params;
}

/**
 * Builds the model part of the GGUF metadata (tokenizer keys come separately).
 * @throws {ModelConfigError} for malformed optional keys.
 */
export function modelMetadata(
  config: ModelConfig,
  spec: ArchitectureSpec,
  options: ModelMetadataOptions,
): GgufMetadata {
  const a = spec.gguf;
  const raw = config.raw;
  const md: GgufMetadata = new Map();
  md.set("general.architecture", gv.str(a));
  md.set("general.type", gv.str("model"));
  md.set("general.name", gv.str(options.name));
  md.set(`${a}.block_count`, gv.u32(config.layers));
  const ctx = intParam(raw, [
    "max_position_embeddings",
    "n_ctx",
    "n_positions",
    "max_length",
    "max_sequence_length",
    "model_max_length",
  ]);
  if (ctx !== undefined) md.set(`${a}.context_length`, gv.u32(ctx));
  md.set(`${a}.embedding_length`, gv.u32(config.hidden));
  md.set(`${a}.feed_forward_length`, gv.u32(config.intermediate));
  md.set(`${a}.attention.head_count`, gv.u32(config.heads));
  md.set(`${a}.attention.head_count_kv`, gv.u32(config.kvHeads));
  if (raw.is_causal === false) md.set(`${a}.attention.causal`, gv.bool(false));

  const rope = ropeParameters(raw);
  const factor = typeof rope.factor === "number" ? rope.factor : undefined;
  if (rope.rope_type === "linear" && factor !== undefined) {
    md.set(`${a}.rope.scaling.type`, gv.str("linear"));
    md.set(`${a}.rope.scaling.factor`, gv.f32(factor));
  } else if (rope.rope_type === "yarn" && factor !== undefined) {
    md.set(`${a}.rope.scaling.type`, gv.str("yarn"));
    md.set(`${a}.rope.scaling.factor`, gv.f32(factor));
    const orig = intParam(rope, ["original_max_position_embeddings"]);
    if (orig !== undefined) md.set(`${a}.rope.scaling.original_context_length`, gv.u32(orig));
    const yarn: [string, string][] = [
      ["extrapolation_factor", "rope.scaling.yarn_ext_factor"],
      ["attention_factor", "rope.scaling.yarn_attn_factor"],
      ["attn_factor", "rope.scaling.yarn_attn_factor"],
      ["beta_fast", "rope.scaling.yarn_beta_fast"],
      ["beta_slow", "rope.scaling.yarn_beta_slow"],
    ];
    for (const [from, to] of yarn) {
      const v = _number(rope, from);
      if (v !== undefined && !md.has(`${a}.${to}`)) md.set(`${a}.${to}`, gv.f32(v));
    }
  }
  const theta = _number(rope, "rope_theta");
  if (theta !== undefined) md.set(`${a}.rope.freq_base`, gv.f32(theta));
  const rmsEps = _number(raw, "rms_norm_eps") ?? _number(raw, "norm_eps");
  if (rmsEps !== undefined) md.set(`${a}.attention.layer_norm_rms_epsilon`, gv.f32(rmsEps));
  if (intParam(raw, ["head_dim"]) !== undefined) {
    md.set(`${a}.attention.key_length`, gv.u32(config.headDim));
    md.set(`${a}.attention.value_length`, gv.u32(config.headDim));
  }
  md.set("general.file_type", gv.u32(options.fileType));
  if (a === "llama") {
    md.set("llama.vocab_size", gv.u32(config.vocab));
    md.set("llama.rope.dimension_count", gv.u32(config.headDim));
  }
  md.set("general.quantization_version", gv.u32(QUANTIZATION_VERSION));
  return md;
}

/**
 * llama3-style rope scaling is not a metadata key but an extra F32 tensor `rope_freqs.weight`
 * (head_dim/2 factors), as llama.cpp's converter generates it. Returns null for other rope types.
 */
export function llama3RopeFactors(config: ModelConfig): Float32Array | null {
  const rope = ropeParameters(config.raw);
  if (typeof rope.rope_type !== "string" || rope.rope_type.toLowerCase() !== "llama3") return null;
  const base = _number(rope, "rope_theta") ?? 10000;
  const factor = _number(rope, "factor") ?? 8;
  const low = _number(rope, "low_freq_factor") ?? 1;
  const high = _number(rope, "high_freq_factor") ?? 4;
  const orig = _number(rope, "original_max_position_embeddings") ?? 8192;
  const dim = config.headDim;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / Math.pow(base, (2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < orig / high) out[i] = 1;
    else if (wavelen > orig / low) out[i] = factor;
    else {
      const s = (orig / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - s) / factor + s);
    }
  }
  return out;
}
