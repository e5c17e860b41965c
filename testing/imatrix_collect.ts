/**
 * Collects an importance matrix without llama.cpp, from the float64 reference forward pass: for
 * every linear weight of every block, Σx² per input column and the number of tokens, where x is
 * the weight's input (q/k/v: the normed hidden state; attn_output: the attention output; gate/up:
 * the normed hidden state; down: silu(gate)·up). Like llama-imatrix, the tokens are cut into
 * chunks of `chunkSize`, each chunk run as a fresh sequence with its first token replaced by BOS,
 * and what does not fill a chunk is dropped. token_embd is never collected, the output projection
 * only with `processOutput` (and never when tied to token_embd).
 *
 * One difference: llama-imatrix skips batches of fewer than 16 tokens; this collects any chunk.
 *
 * @module
 */
import type { ImatrixData, ImatrixStats } from "./imatrix_files.ts";
import { type ReferenceConfig, referenceLogits } from "./reference_forward.ts";
import type { DecodedTensor } from "./safetensors_reader.ts";

/** Options for {@linkcode collectImatrix}. */
export interface CollectOptions {
  /** Tokens per chunk (llama-imatrix's n_ctx). */
  readonly chunkSize: number;
  /** Replaces the first token of every chunk, as llama-imatrix does when the vocab adds BOS. */
  readonly bos?: number;
  /** Stop after this many chunks. @default all whole chunks */
  readonly maxChunks?: number;
  /** Written as `imatrix.datasets`. @default [] */
  readonly datasets?: readonly string[];
  /** Also collect `output.weight` (llama-imatrix `--process-output`). @default false */
  readonly processOutput?: boolean;
}

const BLOCK_WEIGHTS: Readonly<Record<string, string>> = {
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/** The GGUF name of a Hugging Face llama-family weight, or null when it is not collected. */
export function collectedGgufName(hfName: string, processOutput: boolean): string | null {
  if (hfName === "lm_head.weight") return processOutput ? "output.weight" : null;
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hfName);
  const base = m === null ? undefined : BLOCK_WEIGHTS[m[2]!];
  return base === undefined ? null : `blk.${m![1]}.${base}.weight`;
}

/**
 * Runs the reference forward pass over `tokens` in chunks and accumulates the imatrix.
 *
 * @throws {RangeError} when there is not one whole chunk of tokens.
 */
export function collectImatrix(
  weights: ReadonlyMap<string, Pick<DecodedTensor, "shape" | "data">>,
  config: ReferenceConfig,
  tokens: readonly number[],
  options: CollectOptions,
): ImatrixData {
  const { chunkSize } = options;
  const whole = Math.floor(tokens.length / chunkSize);
  const chunks = Math.min(whole, options.maxChunks ?? whole);
  if (!(chunks >= 1)) {
    throw new RangeError(
      `Cannot collect an imatrix as there is no whole chunk: ${tokens.length} tokens, chunks of ${chunkSize}`,
    );
  }
  const stats = new Map<string, { sums: Float64Array; count: number }>();
  const processOutput = options.processOutput ?? false;
  const observe = (hfName: string, x: Float64Array) => {
    const name = collectedGgufName(hfName, processOutput);
    if (name === null) return;
    let s = stats.get(name);
    if (s === undefined) stats.set(name, s = { sums: new Float64Array(x.length), count: 0 });
    for (let j = 0; j < x.length; j++) s.sums[j] = s.sums[j]! + x[j]! * x[j]!;
    s.count++;
  };
  for (let c = 0; c < chunks; c++) {
    const chunk = tokens.slice(c * chunkSize, (c + 1) * chunkSize);
    if (options.bos !== undefined) chunk[0] = options.bos;
    referenceLogits(weights, config, chunk, { observe });
  }
  const entries: ImatrixStats[] = [...stats].map(([name, s]) => ({
    name,
    sums: s.sums,
    counts: [s.count],
  }));
  return { entries, datasets: options.datasets ?? [], chunkCount: chunks, chunkSize };
}
