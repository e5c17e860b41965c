import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { TokenizerLoader } from "@lenml/tokenizers";
import { referenceConfig, referenceGreedy, referenceLogits } from "../testing/reference_forward.ts";
import { type DecodedTensor, readModelWeights } from "../testing/safetensors_reader.ts";
import { generateModel } from "../testing/synthetic_model.ts";

const STORIES = new URL("../../shared/models/stories260K/", import.meta.url).pathname;
const storiesPresent = await Deno.stat(`${STORIES}model.safetensors`).then(() => true, () => false);
if (!storiesPresent) console.warn(`Skipping stories260K tests as ${STORIES} is absent`);

function maxAbsDiff(a: readonly Float64Array[], b: readonly Float64Array[]): number {
  let max = 0;
  a.forEach((row, t) => row.forEach((v, i) => max = Math.max(max, Math.abs(v - b[t]![i]!))));
  return max;
}

Deno.test({
  name: "referenceGreedy() continues BOS on stories260K with the llama2.c sample text",
  ignore: !storiesPresent,
  fn: async () => {
    const readJson = async (name: string) => JSON.parse(await Deno.readTextFile(STORIES + name));
    const tokenizer = TokenizerLoader.fromPreTrained({
      tokenizerJSON: await readJson("tokenizer.json"),
      tokenizerConfig: await readJson("tokenizer_config.json"),
    });
    const text =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    const expected = tokenizer.encode(text, { add_special_tokens: false });
    const weights = await readModelWeights(STORIES);
    const config = referenceConfig(await readJson("config.json"));
    const ids = referenceGreedy(weights, config, [1], expected.length);
    assertEquals(tokenizer.decode(ids), text);
    assertEquals(ids, expected);
  },
});

Deno.test("referenceLogits() gives grouped-query attention the logits of its repeated-head twin", async () => {
  const dir = await Deno.makeTempDir();
  const model = await generateModel(dir, { arch: "llama", seed: 5, numHeads: 4, numKvHeads: 2 });
  const weights = await readModelWeights(dir);
  const config = referenceConfig(model.config);
  // The twin stores each kv head once per query head that uses it: heads 0 and 1 read kv head 0,
  // heads 2 and 3 read kv head 1.
  const twin = new Map<string, DecodedTensor>(weights);
  const headValues = config.headDim * config.hiddenSize;
  for (let l = 0; l < config.numLayers; l++) {
    for (const proj of ["k_proj", "v_proj"]) {
      const name = `model.layers.${l}.self_attn.${proj}.weight`;
      const w = weights.get(name)!;
      const data = new Float32Array(headValues * 4);
      for (let h = 0; h < 4; h++) {
        const kv = Math.floor(h / 2);
        data.set(w.data.subarray(kv * headValues, (kv + 1) * headValues), h * headValues);
      }
      twin.set(name, { dtype: w.dtype, shape: [config.headDim * 4, config.hiddenSize], data });
    }
  }
  const tokens = [model.bosId, 40, 300, 7, 511, 12, 12, 99];
  const gqa = referenceLogits(weights, config, tokens);
  const mha = referenceLogits(twin, { ...config, numKvHeads: 4 }, tokens);
  assert(maxAbsDiff(gqa, mha) < 1e-12, `max |Δ| ${maxAbsDiff(gqa, mha)}`);
  // And the rotation matters: the same sequence without RoPE gives other logits.
  assert(maxAbsDiff(gqa, referenceLogits(weights, config, tokens, { rope: "none" })) > 0.1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("referenceLogits() treats a tied model like an untied one whose lm_head is the embedding", async () => {
  const dir = await Deno.makeTempDir();
  const model = await generateModel(dir, { arch: "qwen2", seed: 6, tied: true });
  const weights = await readModelWeights(dir);
  const config = referenceConfig(model.config);
  assert(config.tied && config.attentionBias);
  const untied = new Map(weights);
  untied.set("lm_head.weight", weights.get("model.embed_tokens.weight")!);
  const tokens = [model.bosId, 3, 4, 5];
  assertEquals(
    referenceLogits(untied, { ...config, tied: false }, tokens),
    referenceLogits(weights, config, tokens),
  );
  assertThrows(
    () => referenceLogits(weights, { ...config, tied: false }, tokens),
    TypeError,
    /^Cannot run the model as tensor lm_head\.weight is missing$/,
  );
  assertThrows(
    () => referenceLogits(weights, config, [512]),
    RangeError,
    /^Cannot embed token 512 as the vocabulary has 512$/,
  );
  await Deno.remove(dir, { recursive: true });
});
