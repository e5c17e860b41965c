/**
 * End to end: seeded Hugging Face checkpoints → `convert()` → real llama.cpp logits, checked
 * against a float64 forward pass written from the `transformers` model definitions.
 *
 * Error measure: e = max over positions and vocabulary of |llama − ref| / (1 + |ref|).
 * Tolerances per output type, from the rounding each adds on top of llama.cpp's f32 arithmetic:
 * - f32: nothing is rounded but f32 accumulation: e ≤ 1e-3.
 * - f16: weights and (on the CPU backend) activations entering each matmul round to 11 bits,
 *   a relative 2^-12 ≈ 2.4e-4 each, accumulated over ~10 matmuls: e ≤ 1e-2.
 * - bf16: the same with 8 bits, 2^-9 ≈ 2e-3 each: e ≤ 6e-2.
 * - q8_0: weights and activations in blocks of 32 with an 8-bit scale to the block maximum,
 *   ≈ max/254 per value, which heavy tails make worse: e ≤ 6e-2.
 * Besides, wherever the reference's top two logits differ by more than twice the allowed error, the
 * argmax must agree.
 *
 * @module
 */
import { ok } from "node:assert/strict";
import { convert } from "../mod.ts";
import { LlamaModel } from "../testing/_scratch_llama_cpp.ts";
import {
  type ReferenceConfig,
  referenceConfig,
  referenceLogits,
  type ReferenceOptions,
} from "../testing/reference_forward.ts";
import { type DecodedTensor, readModelWeights } from "../testing/safetensors_reader.ts";
import { SeededRandom } from "../testing/seeded_random.ts";
import { generateModel, type SyntheticModelSpec } from "../testing/synthetic_model.ts";

type OutType = "f32" | "f16" | "bf16" | "q8_0";

/** Allowed e per output type (see the module doc for where each comes from). */
const TOLERANCE: Readonly<Record<OutType, number>> = {
  f32: 1e-3,
  f16: 1e-2,
  bf16: 6e-2,
  q8_0: 6e-2,
};
const OUT_TYPES = Object.keys(TOLERANCE) as OutType[];
/** Tokens per test sequence. */
const SEQUENCE_LENGTH = 24;

const CASES: readonly { readonly label: string; readonly spec: SyntheticModelSpec }[] = [
  {
    label: "llama, GQA 4/2, untied, F32, sharded",
    spec: { arch: "llama", seed: 101, numHeads: 4, numKvHeads: 2, maxShardBytes: 100_000 },
  },
  {
    label: "llama, MHA 8/8, tied, BF16, heavy-tailed, hidden 128",
    spec: {
      arch: "llama",
      seed: 102,
      hiddenSize: 128,
      intermediateSize: 256,
      numHeads: 8,
      numKvHeads: 8,
      tied: true,
      dtype: "BF16",
      distribution: "student-t",
    },
  },
  {
    label: "qwen2, q/k/v biases, GQA 4/1, F16, sharded",
    spec: { arch: "qwen2", seed: 103, numKvHeads: 1, dtype: "F16", maxShardBytes: 60_000 },
  },
  {
    label: "qwen3, q/k norms, head_dim 32 ≠ 64/4, tied, BF16",
    spec: { arch: "qwen3", seed: 104, headDim: 32, numKvHeads: 2, tied: true, dtype: "BF16" },
  },
  {
    label: "qwen3, untied, F32, heavy-tailed",
    spec: { arch: "qwen3", seed: 105, distribution: "student-t" },
  },
];

const STORIES = new URL("../../shared/models/stories260K/", import.meta.url).pathname;
const storiesPresent = await Deno.stat(`${STORIES}model.safetensors`).then(() => true, () => false);
if (!storiesPresent) console.warn(`Skipping the stories260K case as ${STORIES} is absent`);

/** How far llama.cpp's logits are from the reference. */
interface Comparison {
  /** max |llama − ref| / (1 + |ref|). */
  readonly error: number;
  /** rms(llama − ref) / rms(ref). */
  readonly rmsError: number;
  /** Positions whose reference top-2 gap is wide enough to demand the same argmax. */
  readonly decisive: number;
  /** Of those, positions where llama.cpp picks another token. */
  readonly argmaxMismatches: number;
}

function _argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

function compareLogits(
  llama: readonly Float32Array[],
  ref: readonly Float64Array[],
  tolerance: number,
): Comparison {
  let error = 0;
  let decisive = 0;
  let argmaxMismatches = 0;
  let sumSqDiff = 0;
  let sumSqRef = 0;
  ref.forEach((r, t) => {
    const l = llama[t]!;
    for (let i = 0; i < r.length; i++) {
      error = Math.max(error, Math.abs(l[i]! - r[i]!) / (1 + Math.abs(r[i]!)));
      sumSqDiff += (l[i]! - r[i]!) ** 2;
      sumSqRef += r[i]! ** 2;
    }
    const top = _argmax(r);
    let second = -Infinity;
    for (let i = 0; i < r.length; i++) if (i !== top) second = Math.max(second, r[i]!);
    if (r[top]! - second > 2 * tolerance * (1 + Math.abs(r[top]!))) {
      decisive++;
      if (_argmax(l) !== top) argmaxMismatches++;
    }
  });
  return { error, rmsError: Math.sqrt(sumSqDiff / sumSqRef), decisive, argmaxMismatches };
}

function assertClose(c: Comparison, tolerance: number, what: string): void {
  ok(c.error <= tolerance, `${what}: error ${c.error.toExponential(2)} > ${tolerance}`);
  ok(c.decisive >= SEQUENCE_LENGTH / 4, `${what}: only ${c.decisive} decisive positions`);
  ok(c.argmaxMismatches === 0, `${what}: argmax differs at ${c.argmaxMismatches} positions`);
}

function tokenSequence(seed: number, bos: number, vocab: number): number[] {
  const r = new SeededRandom(seed, "tokens");
  return [bos, ...Array.from({ length: SEQUENCE_LENGTH - 1 }, () => r.uint32() % vocab)];
}

/** Converts model folder `input` to `type` and returns llama.cpp's logits for `tokens`. */
async function llamaLogits(
  input: string,
  type: OutType,
  tokens: readonly number[],
  tokenizerPre?: string,
): Promise<Float32Array[]> {
  const output = await Deno.makeTempFile({ prefix: "sluice-logits-", suffix: `.${type}.gguf` });
  await convert({ input, output, type, ...(tokenizerPre ? { tokenizerPre } : {}) });
  try {
    using model = LlamaModel.load(output, { nCtx: 64 });
    return model.logits(tokens);
  } finally {
    await Deno.remove(output);
  }
}

/** A line for the test log: measured error against the tolerance. */
function report(label: string, type: OutType, c: Comparison): void {
  console.log(
    `${label} → ${type}: error ${c.error.toExponential(2)} (tolerance ${TOLERANCE[type]}), ` +
      `rms ${c.rmsError.toExponential(2)}, ` +
      `argmax agrees at ${c.decisive - c.argmaxMismatches}/${c.decisive} decisive positions`,
  );
}

for (const { label, spec } of CASES) {
  Deno.test(`convert() gives llama.cpp the reference logits: ${label}`, async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "sluice-logits-" });
    try {
      const model = await generateModel(dir, spec);
      const weights = await readModelWeights(dir);
      const config = referenceConfig(model.config);
      const tokens = tokenSequence(spec.seed, model.bosId, model.vocabSize - 2);
      const ref = referenceLogits(weights, config, tokens);
      for (const type of OUT_TYPES) {
        await t.step(type, async () => {
          const c = compareLogits(
            await llamaLogits(dir, type, tokens, "llama-bpe"),
            ref,
            TOLERANCE[type],
          );
          report(label, type, c);
          assertClose(c, TOLERANCE[type], `${label} → ${type}`);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test({
  name: "convert() gives llama.cpp the reference logits: stories260K, F32 → f32",
  ignore: !storiesPresent,
  fn: async () => {
    const weights = await readModelWeights(STORIES);
    const config = referenceConfig(JSON.parse(await Deno.readTextFile(`${STORIES}config.json`)));
    // BOS and the start of the model's own greedy story.
    const tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];
    const ref = referenceLogits(weights, config, tokens);
    const c = compareLogits(await llamaLogits(STORIES, "f32", tokens), ref, TOLERANCE.f32);
    report("stories260K", "f32", c);
    assertClose(c, TOLERANCE.f32, "stories260K → f32");
  },
});

/** Weights with one deliberate fault, as a broken converter could have written them. */
function faulty(
  weights: ReadonlyMap<string, DecodedTensor>,
  config: ReferenceConfig,
  fault: "norm lost" | "gate/up swapped" | "q_norm lost" | "biases lost",
): Map<string, DecodedTensor> {
  const out = new Map(weights);
  const ones = (name: string) => {
    const w = weights.get(name)!;
    out.set(name, { ...w, data: new Float32Array(w.data.length).fill(1) });
  };
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    if (fault === "norm lost") ones(`${p}input_layernorm.weight`);
    if (fault === "q_norm lost") ones(`${p}self_attn.q_norm.weight`);
    if (fault === "gate/up swapped") {
      out.set(`${p}mlp.gate_proj.weight`, weights.get(`${p}mlp.up_proj.weight`)!);
      out.set(`${p}mlp.up_proj.weight`, weights.get(`${p}mlp.gate_proj.weight`)!);
    }
    for (const proj of fault === "biases lost" ? ["q_proj", "k_proj", "v_proj"] : []) {
      const w = weights.get(`${p}self_attn.${proj}.bias`)!;
      out.set(`${p}self_attn.${proj}.bias`, { ...w, data: new Float32Array(w.data.length) });
    }
  }
  return out;
}

Deno.test("llama.cpp's logits fail the check against a reference with a deliberate fault", async (t) => {
  // The comparison must catch what a broken converter would do. Instead of breaking the converter,
  // break the reference the same way and require the error to exceed even the loosest tolerance.
  const loosest = Math.max(...Object.values(TOLERANCE));
  const cases: {
    spec: SyntheticModelSpec;
    faults: (ReferenceOptions | Parameters<typeof faulty>[2])[];
  }[] = [
    {
      spec: CASES[0]!.spec,
      faults: [{ rope: "interleaved" }, { rope: "none" }, "norm lost", "gate/up swapped"],
    },
    { spec: CASES[2]!.spec, faults: [{ rope: "interleaved" }, "biases lost"] },
    { spec: CASES[3]!.spec, faults: ["q_norm lost"] },
  ];
  for (const { spec, faults } of cases) {
    const dir = await Deno.makeTempDir({ prefix: "sluice-faults-" });
    try {
      const model = await generateModel(dir, spec);
      const weights = await readModelWeights(dir);
      const config = referenceConfig(model.config);
      const tokens = tokenSequence(spec.seed, model.bosId, model.vocabSize - 2);
      const llama = await llamaLogits(dir, "f32", tokens, "llama-bpe");
      for (const fault of faults) {
        const name = typeof fault === "string" ? fault : `rope ${fault.rope}`;
        await t.step(`${spec.arch} seed ${spec.seed}: ${name}`, () => {
          const ref = typeof fault === "string"
            ? referenceLogits(faulty(weights, config, fault), config, tokens)
            : referenceLogits(weights, config, tokens, fault);
          const c = compareLogits(llama, ref, loosest);
          console.log(
            `${spec.arch} seed ${spec.seed}, ${name}: error ${c.error.toExponential(2)}, rms ${
              c.rmsError.toExponential(2)
            }`,
          );
          ok(c.error > 3 * loosest, `${name}: error ${c.error} is within 3× the loosest tolerance`);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
