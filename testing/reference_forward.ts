/**
 * A plain float64 forward pass of Hugging Face decoder models (`LlamaForCausalLM`,
 * `Qwen2ForCausalLM`, `Qwen3ForCausalLM`) over the tensors as they are named and laid out in the
 * checkpoint. It follows the `transformers` model definitions: RMSNorm as x·rsqrt(mean(x²)+eps)·w,
 * rotate-half RoPE with inv_freq = 1/θ^(2i/head_dim), grouped-query attention by repeating kv
 * heads, causal softmax attention scaled by 1/√head_dim, a SiLU-gated MLP; Qwen2 adds q/k/v biases,
 * Qwen3 adds per-head RMSNorm on q and k before RoPE. It is the oracle that llama.cpp's logits are
 * checked against, so it shares nothing with the converter.
 *
 * @module
 */
import type { DecodedTensor } from "./safetensors_reader.ts";

/** The parts of `config.json` the forward pass uses. */
export interface ReferenceConfig {
  /** `model_type`. */
  readonly modelType: "llama" | "qwen2" | "qwen3";
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly vocabSize: number;
  /** `tie_word_embeddings`: the output projection is the embedding matrix. */
  readonly tied: boolean;
  /** q/k/v projections carry biases (always for Qwen2; `attention_bias` otherwise). */
  readonly attentionBias: boolean;
}

/** Options for {@linkcode referenceLogits}. */
export interface ReferenceOptions {
  /**
   * How query and key pairs are rotated. `"rotate_half"` is the Hugging Face definition;
   * `"interleaved"` (adjacent pairs, what a missing Q/K permutation amounts to) and `"none"` exist
   * so that tests can show a comparison catches a wrong rotation.
   * @default "rotate_half"
   */
  rope?: "rotate_half" | "interleaved" | "none";
  /**
   * Called with the input of every linear projection, once per token and weight, under the
   * weight's Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, …, `lm_head.weight`, or
   * `model.embed_tokens.weight` for a tied output). The array belongs to the forward pass: read it
   * during the call, never modify it.
   */
  observe?: (hfWeightName: string, input: Float64Array) => void;
}

function _num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`Cannot read config.json as ${key} is not a number: ${String(v)}`);
  }
  return v;
}

/**
 * Reads the fields the forward pass needs from a parsed `config.json`.
 *
 * @throws {TypeError} for another `model_type` or a missing numeric field.
 */
export function referenceConfig(config: Record<string, unknown>): ReferenceConfig {
  const modelType = config["model_type"];
  if (modelType !== "llama" && modelType !== "qwen2" && modelType !== "qwen3") {
    throw new TypeError(`Cannot run model_type ${String(modelType)} as it is not supported`);
  }
  const hiddenSize = _num(config, "hidden_size");
  const numHeads = _num(config, "num_attention_heads");
  return {
    modelType,
    hiddenSize,
    intermediateSize: _num(config, "intermediate_size"),
    numLayers: _num(config, "num_hidden_layers"),
    numHeads,
    numKvHeads: _num(config, "num_key_value_heads", numHeads),
    headDim: _num(config, "head_dim", hiddenSize / numHeads),
    rmsNormEps: _num(config, "rms_norm_eps"),
    ropeTheta: _num(config, "rope_theta", 10000),
    vocabSize: _num(config, "vocab_size"),
    tied: config["tie_word_embeddings"] === true,
    attentionBias: modelType === "qwen2" || config["attention_bias"] === true,
  };
}

type Weights = ReadonlyMap<string, Pick<DecodedTensor, "shape" | "data">>;

function _get(weights: Weights, name: string, shape: readonly number[]): Float32Array {
  const t = weights.get(name);
  if (t === undefined) throw new TypeError(`Cannot run the model as tensor ${name} is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new TypeError(
      `Cannot run the model as tensor ${name} has shape [${t.shape}], expected [${shape}]`,
    );
  }
  return t.data;
}

/** y = W·x (+ b) for W of shape [rows, cols], row-major. */
function _linear(
  w: Float32Array,
  x: Float64Array,
  rows: number,
  bias: Float32Array | null = null,
): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = bias === null ? 0 : bias[r]!;
    const base = r * cols;
    for (let c = 0; c < cols; c++) sum += w[base + c]! * x[c]!;
    y[r] = sum;
  }
  return y;
}

/** RMSNorm of x[offset, offset+n) in place: x·rsqrt(mean(x²)+eps)·w. */
function _rmsNorm(x: Float64Array, w: Float32Array, eps: number, offset = 0, n = x.length): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[offset + i]! ** 2;
  const scale = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[offset + i] = x[offset + i]! * scale * w[i]!;
}

/** Rotates every head of `x` (heads × headDim) for position `pos`, in place. */
function _rope(
  x: Float64Array,
  heads: number,
  headDim: number,
  pos: number,
  theta: number,
  mode: NonNullable<ReferenceOptions["rope"]>,
): void {
  if (mode === "none") return;
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    const base = h * headDim;
    for (let i = 0; i < half; i++) {
      const angle = pos / theta ** ((2 * i) / headDim);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      // rotate_half pairs element i with i + half; interleaved pairs 2i with 2i + 1.
      const a = mode === "rotate_half" ? base + i : base + 2 * i;
      const b = mode === "rotate_half" ? base + i + half : base + 2 * i + 1;
      const x1 = x[a]!;
      const x2 = x[b]!;
      x[a] = x1 * cos - x2 * sin;
      x[b] = x2 * cos + x1 * sin;
    }
  }
}

/**
 * Logits of every position of `tokens` run as one causal sequence from position 0.
 *
 * @param weights The checkpoint's tensors under their Hugging Face names.
 * @param config From {@linkcode referenceConfig}.
 * @returns One array of `vocabSize` logits per position.
 * @throws {TypeError} when a tensor is missing or has the wrong shape.
 * @throws {RangeError} for a token id outside the vocabulary.
 */
export function referenceLogits(
  weights: Weights,
  config: ReferenceConfig,
  tokens: readonly number[],
  options: ReferenceOptions = {},
): Float64Array[] {
  const { hiddenSize: d, intermediateSize: ff, numHeads, numKvHeads, headDim: hd } = config;
  const rope = options.rope ?? "rotate_half";
  const observe = options.observe;
  const qDim = numHeads * hd;
  const kvDim = numKvHeads * hd;
  const group = numHeads / numKvHeads;
  const embed = _get(weights, "model.embed_tokens.weight", [config.vocabSize, d]);
  const lmHead = config.tied ? embed : _get(weights, "lm_head.weight", [config.vocabSize, d]);
  const T = tokens.length;

  const hidden: Float64Array[] = tokens.map((t) => {
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
      throw new RangeError(`Cannot embed token ${t} as the vocabulary has ${config.vocabSize}`);
    }
    return Float64Array.from(embed.subarray(t * d, (t + 1) * d));
  });

  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const inNorm = _get(weights, `${p}input_layernorm.weight`, [d]);
    const wq = _get(weights, `${p}self_attn.q_proj.weight`, [qDim, d]);
    const wk = _get(weights, `${p}self_attn.k_proj.weight`, [kvDim, d]);
    const wv = _get(weights, `${p}self_attn.v_proj.weight`, [kvDim, d]);
    const wo = _get(weights, `${p}self_attn.o_proj.weight`, [d, qDim]);
    const bias = (name: string, n: number) =>
      config.attentionBias ? _get(weights, `${p}self_attn.${name}.bias`, [n]) : null;
    const bq = bias("q_proj", qDim);
    const bk = bias("k_proj", kvDim);
    const bv = bias("v_proj", kvDim);
    const qkNorm = config.modelType === "qwen3";
    const qNorm = qkNorm ? _get(weights, `${p}self_attn.q_norm.weight`, [hd]) : null;
    const kNorm = qkNorm ? _get(weights, `${p}self_attn.k_norm.weight`, [hd]) : null;
    const postNorm = _get(weights, `${p}post_attention_layernorm.weight`, [d]);
    const wGate = _get(weights, `${p}mlp.gate_proj.weight`, [ff, d]);
    const wUp = _get(weights, `${p}mlp.up_proj.weight`, [ff, d]);
    const wDown = _get(weights, `${p}mlp.down_proj.weight`, [d, ff]);

    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const x = Float64Array.from(hidden[t]!);
      _rmsNorm(x, inNorm, config.rmsNormEps);
      if (observe !== undefined) {
        for (const proj of ["q_proj", "k_proj", "v_proj"]) {
          observe(`${p}self_attn.${proj}.weight`, x);
        }
      }
      const q = _linear(wq, x, qDim, bq);
      const k = _linear(wk, x, kvDim, bk);
      for (let h = 0; qNorm !== null && kNorm !== null && h < numHeads; h++) {
        _rmsNorm(q, qNorm, config.rmsNormEps, h * hd, hd);
        if (h < numKvHeads) _rmsNorm(k, kNorm, config.rmsNormEps, h * hd, hd);
      }
      _rope(q, numHeads, hd, t, config.ropeTheta, rope);
      _rope(k, numKvHeads, hd, t, config.ropeTheta, rope);
      qs.push(q);
      ks.push(k);
      vs.push(_linear(wv, x, kvDim, bv));
    }

    const scale = 1 / Math.sqrt(hd);
    for (let t = 0; t < T; t++) {
      const attn = new Float64Array(qDim);
      const q = qs[t]!;
      for (let h = 0; h < numHeads; h++) {
        const kvh = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          const k = ks[s]!;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[h * hd + i]! * k[kvh * hd + i]!;
          scores[s] = dot * scale;
          max = Math.max(max, scores[s]!);
        }
        let total = 0;
        for (let s = 0; s <= t; s++) total += scores[s] = Math.exp(scores[s]! - max);
        for (let s = 0; s <= t; s++) {
          const weight = scores[s]! / total;
          const v = vs[s]!;
          for (let i = 0; i < hd; i++) {
            attn[h * hd + i] = attn[h * hd + i]! + weight * v[kvh * hd + i]!;
          }
        }
      }
      observe?.(`${p}self_attn.o_proj.weight`, attn);
      const out = _linear(wo, attn, d);
      const h = hidden[t]!;
      for (let i = 0; i < d; i++) h[i] = h[i]! + out[i]!;

      const x = Float64Array.from(h);
      _rmsNorm(x, postNorm, config.rmsNormEps);
      observe?.(`${p}mlp.gate_proj.weight`, x);
      observe?.(`${p}mlp.up_proj.weight`, x);
      const gate = _linear(wGate, x, ff);
      const up = _linear(wUp, x, ff);
      for (let i = 0; i < ff; i++) {
        const g = gate[i]!;
        gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
      }
      observe?.(`${p}mlp.down_proj.weight`, gate);
      const down = _linear(wDown, gate, d);
      for (let i = 0; i < d; i++) h[i] = h[i]! + down[i]!;
    }
  }

  const finalNorm = _get(weights, "model.norm.weight", [d]);
  return hidden.map((h) => {
    const x = Float64Array.from(h);
    _rmsNorm(x, finalNorm, config.rmsNormEps);
    observe?.(config.tied ? "model.embed_tokens.weight" : "lm_head.weight", x);
    return _linear(lmHead, x, config.vocabSize);
  });
}

/**
 * Greedy continuation of `prompt` by the reference pass: `count` new tokens, each the argmax of the
 * last position's logits (lowest id on ties).
 */
export function referenceGreedy(
  weights: Weights,
  config: ReferenceConfig,
  prompt: readonly number[],
  count: number,
): number[] {
  const seq = [...prompt];
  for (let n = 0; n < count; n++) {
    const last = referenceLogits(weights, config, seq).at(-1)!;
    let best = 0;
    for (let v = 1; v < last.length; v++) if (last[v]! > last[best]!) best = v;
    seq.push(best);
  }
  return seq.slice(prompt.length);
}
