/**
 * The two models of the quality benchmark, each with its F32 GGUF, evaluation chunks and an
 * imatrix collected on held-out tokens by the float64 reference forward pass:
 *
 * - stories260K, a really trained llama (tied embeddings, hidden 64, ffn 172), over its
 *   TinyStories text; evaluation takes the first chunks, calibration the last ones.
 * - A generated llama with Student-t weights over seeded random token sequences (calibration and
 *   evaluation from different seeds). Its sizes are multiples of 256 so that every ggml type,
 *   Q4_K included, applies without a shape fallback.
 *
 * @module
 */
import { convert } from "../mod.ts";
import { collectImatrix } from "../testing/imatrix_collect.ts";
import { encodeImatrixGguf } from "../testing/imatrix_files.ts";
import { LlamaModel } from "../testing/llama_cpp.ts";
import { referenceConfig } from "../testing/reference_forward.ts";
import { SeededRandom } from "../testing/seeded_random.ts";
import { generateModel, readModelWeights } from "../testing/synthetic_model.ts";

/** Where stories260K lives in the shared tree. */
export const STORIES_DIR = new URL("../../shared/models/stories260K/", import.meta.url).pathname;

/** A prepared model. */
export interface QualityModel {
  readonly name: string;
  /** One line on what is evaluated. */
  readonly description: string;
  /** The Hugging Face folder. */
  readonly dir: string;
  /** Its F32 GGUF, written by Sluice. */
  readonly f32: string;
  readonly tokenizerPre?: string;
  /** Evaluation chunks of `nCtx` tokens, each starting with BOS. */
  readonly chunks: readonly (readonly number[])[];
  /** The imatrix (GGUF format) collected on calibration tokens. */
  readonly imatrix: string;
  /**
   * Weights whose rows do not divide into FP4 blocks: Sluice falls back to F16 for them, and
   * the ggml and simulated rows are told to do the same.
   */
  readonly f16Weights: RegExp | null;
  /** Seconds spent preparing (conversion, tokenization, imatrix collection). */
  readonly seconds: number;
}

/** Sizes of the evaluation and calibration sets. */
export interface QualitySizes {
  readonly nCtx: number;
  readonly evalChunks: number;
  readonly calibrationChunks: number;
}

function _chunks(tokens: readonly number[], nCtx: number, bos: number): number[][] {
  const out: number[][] = [];
  for (let at = 0; at + nCtx <= tokens.length; at += nCtx) {
    const chunk = tokens.slice(at, at + nCtx);
    chunk[0] = bos;
    out.push(chunk);
  }
  return out;
}

async function _imatrix(
  dir: string,
  tokens: readonly number[],
  bos: number,
  nCtx: number,
  path: string,
  dataset: string,
): Promise<void> {
  const weights = await readModelWeights(dir);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const data = collectImatrix(weights, referenceConfig(config), tokens, {
    chunkSize: nCtx,
    bos,
    datasets: [dataset],
  });
  await Deno.writeFile(path, encodeImatrixGguf(data));
}

/** stories260K: first `evalChunks` chunks of its text evaluated, the last ones calibrate. */
export async function prepareStories(work: string, sizes: QualitySizes): Promise<QualityModel> {
  const started = performance.now();
  const { nCtx } = sizes;
  const f32 = `${work}/stories260K-f32.gguf`;
  await convert({ input: STORIES_DIR, output: f32, type: "f32" });
  const text = await Deno.readTextFile(`${STORIES_DIR}eval/tinystories-train-head.txt`);
  const bos = 1;
  let tokens: number[];
  {
    using model = LlamaModel.load(f32, { nCtx });
    tokens = model.tokenize(text, true);
  }
  const all = Math.floor(tokens.length / nCtx);
  if (all < sizes.evalChunks + sizes.calibrationChunks) {
    throw new RangeError(`stories260K has ${all} chunks of ${nCtx}, fewer than asked`);
  }
  const chunks = _chunks(tokens.slice(0, sizes.evalChunks * nCtx), nCtx, bos);
  const calibration = tokens.slice((all - sizes.calibrationChunks) * nCtx, all * nCtx);
  const imatrix = `${work}/stories260K.imatrix.gguf`;
  await _imatrix(STORIES_DIR, calibration, bos, nCtx, imatrix, "tinystories-train-head.txt (tail)");
  return {
    name: "stories260K",
    description:
      `stories260K (F32 llama, 260K params, tied embeddings), ${chunks.length} chunks × ` +
      `${nCtx} of tinystories-train-head.txt; imatrix from its last ${sizes.calibrationChunks} chunks`,
    dir: STORIES_DIR,
    f32,
    chunks,
    imatrix,
    f16Weights: /^blk\..*\.ffn_down\.weight$/,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Shape of the generated model. */
export const GENERATED_SPEC = {
  arch: "llama",
  seed: 20260,
  hiddenSize: 256,
  intermediateSize: 768,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  distribution: "student-t",
  tokenizer: "tiny-bpe",
} as const;

function _randomTokens(seed: number, key: string, count: number, below: number): number[] {
  const r = new SeededRandom(seed, key);
  return Array.from({ length: count }, () => r.uint32() % below);
}

/** The generated llama: random token chunks evaluated, other random chunks calibrate. */
export async function prepareGenerated(work: string, sizes: QualitySizes): Promise<QualityModel> {
  const started = performance.now();
  const { nCtx } = sizes;
  const dir = `${work}/generated`;
  const model = await generateModel(dir, GENERATED_SPEC);
  const f32 = `${work}/generated-f32.gguf`;
  const tokenizerPre = "llama-bpe";
  await convert({ input: dir, output: f32, type: "f32", tokenizerPre });
  // Ordinary tokens only: the special tokens sit at the end of the tiny BPE vocabulary.
  const below = Math.min(model.bosId, model.eosId);
  const seed = GENERATED_SPEC.seed;
  const evalTokens = _randomTokens(seed, "quality eval", sizes.evalChunks * nCtx, below);
  const calibration = _randomTokens(
    seed,
    "quality calibration",
    sizes.calibrationChunks * nCtx,
    below,
  );
  const imatrix = `${work}/generated.imatrix.gguf`;
  await _imatrix(dir, calibration, model.bosId, nCtx, imatrix, "seeded random tokens");
  const s = GENERATED_SPEC;
  return {
    name: "generated",
    description: `generated llama (Student-t weights, hidden ${s.hiddenSize}, ffn ` +
      `${s.intermediateSize}, ${s.numLayers} layers, ${s.numHeads}/${s.numKvHeads} heads, vocab ` +
      `${model.vocabSize}), ${sizes.evalChunks} chunks × ${nCtx} random tokens; imatrix from ` +
      `${sizes.calibrationChunks} other random chunks`,
    dir,
    f32,
    tokenizerPre,
    chunks: _chunks(evalTokens, nCtx, model.bosId),
    imatrix,
    f16Weights: null,
    seconds: (performance.now() - started) / 1000,
  };
}
