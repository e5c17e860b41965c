/**
 * KL divergence of a quantized model's next-token distribution from the unquantized model's, the
 * way `llama-perplexity --kl-divergence` computes it: every chunk of `n_ctx` tokens runs as a
 * fresh sequence (its first token already BOS), the positions of the second half are scored, and
 * per position KL(p_base ‖ p_q) = Σ p_base·(log p_base − log p_q); the mean is over positions.
 * Also the share of positions where both models rank the same token first, and the quantized
 * model's perplexity of the actual next tokens.
 *
 * One difference: llama-perplexity stores the base log-probabilities as 16-bit values; here they
 * are kept as float32 and every sum runs in float64.
 *
 * @module
 */
import type { LlamaModel } from "../testing/llama_cpp.ts";

/** The base model's log-probabilities at every scored position. */
export interface KldReference {
  /** Chunks of `nCtx` tokens, each starting with BOS. */
  readonly chunks: readonly (readonly number[])[];
  readonly nVocab: number;
  /** Per chunk: scored positions × nVocab log-probabilities, row-major. */
  readonly logProbs: readonly Float32Array[];
  /** Per chunk: the base model's top token at each scored position. */
  readonly top: readonly Int32Array[];
  /** Mean entropy of the base distribution over scored positions, in nats. */
  readonly entropy: number;
}

/** What {@linkcode scoreKld} measures. */
export interface KldScore {
  /** Mean KL divergence over scored positions, in nats. */
  readonly kld: number;
  /** Standard error of that mean. */
  readonly kldError: number;
  /** 99th percentile of the per-position KL divergence. */
  readonly kld99: number;
  /** Share of positions whose top token matches the base's, in [0, 1]. */
  readonly sameTop: number;
  /** Perplexity of the actual next tokens. */
  readonly ppl: number;
  readonly positions: number;
  /** KL divergence at every scored position, in order (for paired comparisons). */
  readonly perPosition: Float64Array;
}

/** Mean and standard error of the per-position difference a − b (paired). */
export function pairedDifference(a: KldScore, b: KldScore): { mean: number; error: number } {
  const n = a.perPosition.length;
  if (b.perPosition.length !== n) throw new Error("scores cover different positions");
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a.perPosition[i]! - b.perPosition[i]!;
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (a.perPosition[i]! - b.perPosition[i]! - mean) ** 2;
  return { mean, error: Math.sqrt(sq / (n - 1) / n) };
}

/** First scored position of a chunk (llama-perplexity scores the second half). */
function _first(nCtx: number): number {
  return nCtx >> 1;
}

/** Writes log-softmax(row) into `out` and returns the arg-max. */
function _logSoftmax(row: Float32Array, out: Float32Array | Float64Array): number {
  let max = -Infinity;
  let arg = 0;
  for (let v = 0; v < row.length; v++) {
    if (row[v]! > max) [max, arg] = [row[v]!, v];
  }
  let sum = 0;
  for (let v = 0; v < row.length; v++) sum += Math.exp(row[v]! - max);
  const lse = max + Math.log(sum);
  for (let v = 0; v < row.length; v++) out[v] = row[v]! - lse;
  return arg;
}

/** Runs the base model over every chunk and keeps its scored log-probabilities. */
export function kldReference(
  model: LlamaModel,
  chunks: readonly (readonly number[])[],
): KldReference {
  const nVocab = model.nVocab;
  const logProbs: Float32Array[] = [];
  const top: Int32Array[] = [];
  let entropy = 0;
  let positions = 0;
  for (const chunk of chunks) {
    const first = _first(chunk.length);
    const scored = chunk.length - 1 - first;
    const lp = new Float32Array(scored * nVocab);
    const best = new Int32Array(scored);
    const logits = model.logits(chunk);
    for (let i = 0; i < scored; i++) {
      const row = lp.subarray(i * nVocab, (i + 1) * nVocab);
      best[i] = _logSoftmax(logits[first + i]!, row);
      for (const l of row) entropy -= Math.exp(l) * l;
      positions++;
    }
    logProbs.push(lp);
    top.push(best);
  }
  return { chunks, nVocab, logProbs, top, entropy: entropy / positions };
}

/** Scores a quantized model against the reference. */
export function scoreKld(model: LlamaModel, ref: KldReference): KldScore {
  const nVocab = ref.nVocab;
  if (model.nVocab !== nVocab) throw new Error(`vocabularies differ: ${model.nVocab} vs ${nVocab}`);
  const kls: number[] = [];
  let same = 0;
  let nll = 0;
  const lq = new Float64Array(nVocab);
  ref.chunks.forEach((chunk, c) => {
    const first = _first(chunk.length);
    const logits = model.logits(chunk);
    const lp = ref.logProbs[c]!;
    const top = ref.top[c]!;
    for (let i = 0; i < top.length; i++) {
      const best = _logSoftmax(logits[first + i]!, lq);
      let kl = 0;
      for (let v = 0; v < nVocab; v++) {
        const l = lp[i * nVocab + v]!;
        kl += Math.exp(l) * (l - lq[v]!);
      }
      kls.push(kl);
      if (best === top[i]) same++;
      nll -= lq[chunk[first + i + 1]!]!;
    }
  });
  const n = kls.length;
  const mean = kls.reduce((a, b) => a + b, 0) / n;
  const variance = kls.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  const sorted = Float64Array.from(kls).sort();
  return {
    kld: mean,
    kldError: Math.sqrt(variance / n),
    kld99: sorted[Math.min(n - 1, Math.floor(0.99 * n))]!,
    sameTop: same / n,
    ppl: Math.exp(nll / n),
    positions: n,
    perPosition: Float64Array.from(kls),
  };
}
