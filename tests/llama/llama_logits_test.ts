/**
 * End to end: seeded Hugging Face checkpoints → `convert()` → real llama.cpp logits, checked
 * against a float64 forward pass written from the `transformers` model definitions.
 *
 * Two error measures over all positions × vocabulary:
 * - rms = rms(llama − ref) / rms(ref): systematic faults (a wrong rotation, a lost norm, swapped
 *   tensors) give 0.17–0.9 here, rounding gives far less;
 * - max = max |llama − ref| / (1 + |ref|): catches a fault confined to a few logits (one bad row).
 * Besides, wherever the reference's top two logits are further apart than 5× the rms of
 * |llama − ref|, llama.cpp's argmax must be the reference's, at 3 positions or more.
 *
 * Tolerances per output type, from the rounding each adds to llama.cpp's f32 arithmetic, about 2–3×
 * the worst measured error (given in brackets):
 * - f32: llama.cpp runs with an F32 KV cache and no flash attention (`exact`), so only float32
 *   rounding remains: rms 1e-5 [4.2e-7], max 1e-4 [3.3e-6].
 * - f16: weights and, on the CPU backend, the activations entering each matmul round to 11 bits:
 *   rms 5e-3 [1.7e-3], max 4e-2 [1.4e-2].
 * - bf16: the same at 8 bits, 8× coarser: rms 3e-2 [1.1e-2], max 0.25 [0.11].
 * - q8_0: weights and activations in blocks of 32 with a step of block max/127, about 1/440 of the
 *   block max in rms, worse with heavy tails: rms 8e-2 [4.1e-2], max 0.8 [0.37].
 * The max errors are ~10× the rms ones as they are the tail of 12 288 logits, relative to 1 + |ref|.
 *
 * @module
 */
import { assert, assertEquals } from "../_assert.ts";
import { TokenizerLoader } from "@lenml/tokenizers";
import { convert } from "../../mod.ts";
import { gguf } from "@huggingface/gguf";
import { LlamaModel } from "../../testing/llama_cpp.ts";
import {
  type ReferenceConfig,
  referenceConfig,
  referenceLogits,
  type ReferenceOptions,
} from "../../testing/reference_forward.ts";
import { type DecodedTensor, readModelWeights } from "../../testing/safetensors_reader.ts";
import { SeededRandom } from "../../testing/seeded_random.ts";
import { generateModel, type SyntheticModelSpec } from "../../testing/synthetic_model.ts";

type OutType = "f32" | "f16" | "bf16" | "q8_0";

interface Tolerance {
  /** Bound on rms(llama − ref) / rms(ref). */
  readonly rms: number;
  /** Bound on max |llama − ref| / (1 + |ref|). */
  readonly max: number;
}

/** Allowed errors per output type (see the module doc for where each comes from). */
const TOLERANCE: Readonly<Record<OutType, Tolerance>> = {
  f32: { rms: 1e-5, max: 1e-4 },
  f16: { rms: 5e-3, max: 4e-2 },
  bf16: { rms: 3e-2, max: 0.25 },
  q8_0: { rms: 8e-2, max: 0.8 },
};
const OUT_TYPES = Object.keys(TOLERANCE) as OutType[];
/** Tokens per test sequence. */
const SEQUENCE_LENGTH = 24;
/** Fewest positions whose argmax must be checked, so that the check is never vacuous. */
const MIN_DECISIVE = 3;

interface Case {
  readonly label: string;
  readonly spec: SyntheticModelSpec;
  /** @default all of OUT_TYPES */
  readonly types?: readonly OutType[];
}

const CASES: readonly Case[] = [
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
  {
    // The demo's shape: Llama 3's real tokenizer (its pre-tokenizer is found by hash), 128256 rows.
    label: "llama, Llama 3 tokenizer, tied, BF16, 1 layer",
    spec: {
      arch: "llama",
      seed: 106,
      tokenizer: "llama3",
      tied: true,
      dtype: "BF16",
      numLayers: 1,
    },
    types: ["f32", "q8_0"],
  },
];

/** The tiny BPE's hash is in no table, so its conversions name the pre-tokenizer. */
function tokenizerPreOf(spec: SyntheticModelSpec): string | undefined {
  return (spec.tokenizer ?? "tiny-bpe") === "tiny-bpe" ? "llama-bpe" : undefined;
}

const STORIES = new URL("../../../shared/models/stories260K/", import.meta.url).pathname;
const storiesPresent = await Deno.stat(`${STORIES}model.safetensors`).then(() => true, () => false);
if (!storiesPresent) console.warn(`Skipping the stories260K case as ${STORIES} is absent`);

/** How far llama.cpp's logits are from the reference. */
interface Comparison {
  /** rms(llama − ref) / rms(ref). */
  readonly rms: number;
  /** max |llama − ref| / (1 + |ref|). */
  readonly max: number;
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

function compareLogits(llama: readonly Float32Array[], ref: readonly Float64Array[]): Comparison {
  let max = 0;
  let sumSqDiff = 0;
  let sumSqRef = 0;
  let count = 0;
  ref.forEach((r, t) => {
    const l = llama[t]!;
    for (let i = 0; i < r.length; i++) {
      const diff = l[i]! - r[i]!;
      max = Math.max(max, Math.abs(diff) / (1 + Math.abs(r[i]!)));
      sumSqDiff += diff * diff;
      sumSqRef += r[i]! * r[i]!;
      count++;
    }
  });
  // Demand the argmax only where the gap is 5× the typical absolute error of this comparison.
  const minGap = 5 * Math.sqrt(sumSqDiff / count);
  let decisive = 0;
  let argmaxMismatches = 0;
  ref.forEach((r, t) => {
    const top = _argmax(r);
    let second = -Infinity;
    for (let i = 0; i < r.length; i++) if (i !== top) second = Math.max(second, r[i]!);
    if (r[top]! - second > minGap) {
      decisive++;
      if (_argmax(llama[t]!) !== top) argmaxMismatches++;
    }
  });
  return { rms: Math.sqrt(sumSqDiff / sumSqRef), max, decisive, argmaxMismatches };
}

/** Every way `c` breaks `tolerance`; empty when the logits pass. */
function violations(c: Comparison, tolerance: Tolerance): string[] {
  const out: string[] = [];
  if (!(c.rms <= tolerance.rms)) out.push(`rms error ${c.rms.toExponential(2)} > ${tolerance.rms}`);
  if (!(c.max <= tolerance.max)) out.push(`max error ${c.max.toExponential(2)} > ${tolerance.max}`);
  if (c.decisive < MIN_DECISIVE) out.push(`only ${c.decisive} decisive positions`);
  if (c.argmaxMismatches > 0) out.push(`argmax differs at ${c.argmaxMismatches} positions`);
  return out;
}

function describe(c: Comparison): string {
  return `rms ${c.rms.toExponential(2)}, max ${c.max.toExponential(2)}, argmax agrees at ${
    c.decisive - c.argmaxMismatches
  }/${c.decisive} decisive positions`;
}

/** BOS, then seeded ids below `below`. */
function tokenSequence(seed: number, bos: number, below: number): number[] {
  const r = new SeededRandom(seed, "tokens");
  return [bos, ...Array.from({ length: SEQUENCE_LENGTH - 1 }, () => r.uint32() % below)];
}

/** Converts model folder `input` to `type` and returns llama.cpp's logits for `tokens`. */
async function llamaLogits(
  input: string,
  type: OutType,
  tokens: readonly number[],
  tokenizerPre?: string,
): Promise<Float32Array[]> {
  const output = await Deno.makeTempFile({ prefix: "sluice-logits-", suffix: `.${type}.gguf` });
  try {
    const stats = await convert({ input, output, type, ...(tokenizerPre ? { tokenizerPre } : {}) });
    // An independent reader parses every file too.
    const parsed = await gguf(output, { allowLocalFile: true });
    assertEquals(parsed.tensorInfos.length, stats.tensors);
    using model = LlamaModel.load(output, { nCtx: 64, exact: true });
    return model.logits(tokens);
  } finally {
    await Deno.remove(output);
  }
}

for (const { label, spec, types = OUT_TYPES } of CASES) {
  Deno.test(`convert() gives llama.cpp the reference logits: ${label}`, async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "sluice-logits-" });
    try {
      const model = await generateModel(dir, spec);
      const weights = await readModelWeights(dir);
      const config = referenceConfig(model.config);
      // Both tokenizers put their special tokens from the BOS id on.
      const tokens = tokenSequence(spec.seed, model.bosId, model.bosId);
      const ref = referenceLogits(weights, config, tokens);
      for (const type of types) {
        await t.step(type, async () => {
          const c = compareLogits(await llamaLogits(dir, type, tokens, tokenizerPreOf(spec)), ref);
          console.log(`${label} → ${type}: ${describe(c)}`);
          const bad = violations(c, TOLERANCE[type]);
          assert(bad.length === 0, `${label} → ${type}: ${bad.join("; ")}`);
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
    const c = compareLogits(await llamaLogits(STORIES, "f32", tokens), ref);
    console.log(`stories260K → f32: ${describe(c)}`);
    const bad = violations(c, TOLERANCE.f32);
    assert(bad.length === 0, `stories260K → f32: ${bad.join("; ")}`);
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

Deno.test("the logits check fails against a reference with a deliberate fault", async (t) => {
  // The check must catch what a broken converter would do. Instead of breaking the converter, break
  // the reference the same way, and require llama.cpp's logits from the tightest (f32) and loosest
  // (q8_0) conversions to fail the check, with an rms error beyond twice the tolerance.
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
      const tokens = tokenSequence(spec.seed, model.bosId, model.bosId);
      for (const type of ["f32", "q8_0"] as const) {
        const llama = await llamaLogits(dir, type, tokens, "llama-bpe");
        for (const fault of faults) {
          const name = typeof fault === "string" ? fault : `rope ${fault.rope}`;
          await t.step(`${spec.arch} seed ${spec.seed} → ${type}: ${name}`, () => {
            const ref = typeof fault === "string"
              ? referenceLogits(faulty(weights, config, fault), config, tokens)
              : referenceLogits(weights, config, tokens, fault);
            const c = compareLogits(llama, ref);
            console.log(`${spec.arch} seed ${spec.seed} → ${type}, ${name}: ${describe(c)}`);
            assert(violations(c, TOLERANCE[type]).length > 0, `${name} passes the check`);
            assert(
              c.rms > 2 * TOLERANCE[type].rms,
              `${name}: rms error ${c.rms} is within 2× tolerance`,
            );
          });
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("convert() with pre llama-bpe makes llama.cpp tokenize the tiny BPE as transformers does", async () => {
  const dir = await Deno.makeTempDir();
  const output = `${dir}/model.gguf`;
  try {
    const model = await generateModel(dir, { arch: "llama", seed: 1, numLayers: 1 });
    await convert({ input: dir, output, type: "f32", tokenizerPre: "llama-bpe" });
    const tokenizer = TokenizerLoader.fromPreTrained({
      tokenizerJSON: JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`)),
      tokenizerConfig: JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)),
    });
    using llama = LlamaModel.load(output);
    assertEquals(llama.nVocab, model.vocabSize);
    const texts = [
      "A sluice is a gate that holds water back until someone decides to let it through.",
      "The miller opened the gates at 1234 o'clock, and it's singing!",
      "  leading spaces and\ttabs\n\nnew lines   ",
      "Hello WORLD, they'RE here; we'll see. 3.14159 + 2 = 5.14159",
      "naïve café — 東京 🚀",
      "sticks,stones;and?water!!!",
    ];
    // With pre "default" llama.cpp splits digits differently (one token more for "1234").
    for (const text of texts) {
      assertEquals(llama.tokenize(text, true), tokenizer.encode(text), text);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
