/**
 * Perplexity scored the way `llama-perplexity` does, through real llama.cpp: the text is tokenized
 * once with BOS, cut into chunks of `nCtx` tokens, each chunk's first token replaced by BOS, and
 * only the second half of each chunk scored.
 *
 * @module
 */
import type { LlamaModel } from "./llama_cpp.ts";

/** Result of {@linkcode perplexity}. */
export interface PerplexityResult {
  readonly ppl: number;
  readonly chunks: number;
  readonly scoredTokens: number;
}

/** Computes llama-perplexity's score of `text` for a loaded model with context `nCtx`. */
export function perplexity(
  model: LlamaModel,
  text: string,
  nCtx: number,
  bos: number,
): PerplexityResult {
  const tokens = model.tokenize(text, true);
  const chunks = Math.floor(tokens.length / nCtx);
  const first = nCtx / 2;
  let nll = 0;
  let scored = 0;
  for (let c = 0; c < chunks; c++) {
    const chunk = tokens.slice(c * nCtx, (c + 1) * nCtx);
    chunk[0] = bos;
    const logits = model.logits(chunk);
    for (let j = first; j < nCtx - 1; j++) {
      const row = logits[j]!;
      let max = -Infinity;
      for (let v = 0; v < row.length; v++) if (row[v]! > max) max = row[v]!;
      let sum = 0;
      for (let v = 0; v < row.length; v++) sum += Math.exp(row[v]! - max);
      nll += Math.log(sum) + max - row[tokens[c * nCtx + j + 1]!]!;
      scored++;
    }
  }
  return { ppl: Math.exp(nll / scored), chunks, scoredTokens: scored };
}
