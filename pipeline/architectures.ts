/**
 * Model architecture tables: which Hugging Face architectures Sluice converts, their GGUF
 * architecture name, how each checkpoint tensor is renamed, the shape config.json implies for it,
 * and whether Q/K rows are permuted (LLaMA-family rope layout), as llama.cpp's converter does.
 *
 * @module
 */
import type { ModelConfig } from "./model_config.ts";

/** How rows of a tensor are reordered on the way out. */
export type RowPermutation = { readonly kind: "rope_qk"; readonly heads: number } | null;

/** A checkpoint tensor mapped to its GGUF name. */
export interface MappedTensor {
  /** GGUF tensor name. */
  readonly name: string;
  /** The PyTorch shape config.json implies. */
  readonly expectedShape: readonly number[];
  readonly permutation: RowPermutation;
}

/** One supported architecture family. */
export interface ArchitectureSpec {
  /** `general.architecture`. */
  readonly gguf: "llama" | "qwen2" | "qwen3";
  /** Q/K rows are permuted from HF rotate-half to llama.cpp's interleaved rope. */
  readonly permuteQk: boolean;
  /** The model has per-head q/k RMS norms. */
  readonly qkNorm: boolean;
}

/** Hugging Face `architectures[0]` → spec. */
export const ARCHITECTURES: Readonly<Record<string, ArchitectureSpec>> = {
  LlamaForCausalLM: { gguf: "llama", permuteQk: true, qkNorm: false },
  MistralForCausalLM: { gguf: "llama", permuteQk: true, qkNorm: false },
  Qwen2ForCausalLM: { gguf: "qwen2", permuteQk: false, qkNorm: false },
  Qwen3ForCausalLM: { gguf: "qwen3", permuteQk: false, qkNorm: true },
};

/** A model whose architecture or tensors Sluice cannot convert. */
export class UnsupportedModelError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedModelError";
  }
}

/**
 * Finds the spec for a config's architecture.
 * @throws {UnsupportedModelError} listing the supported architectures.
 */
export function architectureOf(config: ModelConfig): ArchitectureSpec {
  const spec = ARCHITECTURES[config.architecture];
  if (!spec) {
    throw new UnsupportedModelError(
      `Cannot convert architecture ${config.architecture}: supported are ${
        Object.keys(ARCHITECTURES).join(", ")
      }`,
    );
  }
  return spec;
}

/** Checkpoint tensors that carry no weights llama.cpp needs. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$|\.attention\.masked_bias$|\.attention\.bias$/;

/**
 * Maps one checkpoint tensor name, or returns null for tensors the converter drops.
 * @throws {UnsupportedModelError} for a tensor this architecture has no place for.
 */
export function mapTensor(
  spec: ArchitectureSpec,
  config: ModelConfig,
  hfName: string,
): MappedTensor | null {
  if (IGNORED.test(hfName)) return null;
  const { hidden, intermediate, vocab, heads, kvHeads, headDim } = config;
  const plain = (name: string, shape: readonly number[]): MappedTensor => ({
    name,
    expectedShape: shape,
    permutation: null,
  });
  switch (hfName) {
    case "model.embed_tokens.weight":
      return plain("token_embd.weight", [vocab, hidden]);
    case "model.norm.weight":
      return plain("output_norm.weight", [hidden]);
    case "lm_head.weight":
      return plain("output.weight", [vocab, hidden]);
  }
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m) {
    const layer = Number(m[1]);
    if (layer >= config.layers) {
      throw new UnsupportedModelError(
        `Cannot place tensor ${hfName} as config.json has only ${config.layers} layers`,
      );
    }
    const blk = `blk.${layer}.`;
    const rope = (n: number): RowPermutation =>
      spec.permuteQk ? { kind: "rope_qk", heads: n } : null;
    const role = m[2]!;
    const qRows = heads * headDim, kvRows = kvHeads * headDim;
    const table: Record<string, MappedTensor> = {
      "input_layernorm.weight": plain(`${blk}attn_norm.weight`, [hidden]),
      "post_attention_layernorm.weight": plain(`${blk}ffn_norm.weight`, [hidden]),
      "self_attn.q_proj.weight": {
        name: `${blk}attn_q.weight`,
        expectedShape: [qRows, hidden],
        permutation: rope(heads),
      },
      "self_attn.k_proj.weight": {
        name: `${blk}attn_k.weight`,
        expectedShape: [kvRows, hidden],
        permutation: rope(kvHeads),
      },
      "self_attn.v_proj.weight": plain(`${blk}attn_v.weight`, [kvRows, hidden]),
      "self_attn.o_proj.weight": plain(`${blk}attn_output.weight`, [hidden, qRows]),
      "self_attn.q_proj.bias": {
        name: `${blk}attn_q.bias`,
        expectedShape: [qRows],
        permutation: rope(heads),
      },
      "self_attn.k_proj.bias": {
        name: `${blk}attn_k.bias`,
        expectedShape: [kvRows],
        permutation: rope(kvHeads),
      },
      "self_attn.v_proj.bias": plain(`${blk}attn_v.bias`, [kvRows]),
      "self_attn.o_proj.bias": plain(`${blk}attn_output.bias`, [hidden]),
      "mlp.gate_proj.weight": plain(`${blk}ffn_gate.weight`, [intermediate, hidden]),
      "mlp.up_proj.weight": plain(`${blk}ffn_up.weight`, [intermediate, hidden]),
      "mlp.down_proj.weight": plain(`${blk}ffn_down.weight`, [hidden, intermediate]),
    };
    if (spec.qkNorm) {
      table["self_attn.q_norm.weight"] = plain(`${blk}attn_q_norm.weight`, [headDim]);
      table["self_attn.k_norm.weight"] = plain(`${blk}attn_k_norm.weight`, [headDim]);
    }
    const mapped = table[role];
    if (mapped) return mapped;
  }
  throw new UnsupportedModelError(
    `Cannot place tensor ${hfName}: ${config.architecture} has no GGUF tensor for it`,
  );
}
