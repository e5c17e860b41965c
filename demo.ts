/**
 * `deno task demo`: the whole job on a built-in model. Generates a small seeded llama with Llama
 * 3's real tokenizer, serves it from a loopback Hugging Face Hub, converts it straight from there
 * to GGUF, loads the file in real llama.cpp and prints a few greedy tokens next to those of an
 * independent float64 forward pass of the original weights, plus the conversion stats.
 *
 * @module
 */
import { convert, type ConvertStats } from "./mod.ts";
import { formatBytes, progressRenderer } from "./pipeline/progress.ts";
import { LlamaModel } from "./testing/llama_cpp.ts";
import { referenceConfig, referenceGreedy } from "./testing/reference_forward.ts";
import { generateModel, readModelWeights } from "./testing/synthetic_model.ts";
import { HubTestServer } from "./testing/hub_server.ts";

const PROMPT = "Once upon a time";
const NEW_TOKENS = 8;

const work = await Deno.makeTempDir({ prefix: "sluice-demo-" });
try {
  const modelDir = `${work}/demo-llama`;
  console.log("1. generating a seeded llama (GQA, 2 layers, Llama 3 tokenizer) ...");
  const model = await generateModel(modelDir, {
    arch: "llama",
    seed: 42,
    hiddenSize: 128,
    intermediateSize: 352,
    numLayers: 2,
    numHeads: 8,
    numKvHeads: 2,
    dtype: "BF16",
    tokenizer: "llama3",
  });

  // A Hub-compatible server on 127.0.0.1, with the separate CDN origin the real Hub redirects to.
  await using hub = HubTestServer.start({ cdn: "separate" });
  const commit = await hub.addRepo("sluice-demo/tiny-llama", modelDir);
  const input = "hf:sluice-demo/tiny-llama";
  const output = `${work}/demo-llama-q8_0.gguf`;
  let stats: ConvertStats;
  {
    console.log(`2. serving it as ${input} (commit ${commit.slice(0, 8)}) at ${hub.endpoint}`);
    console.log(`   converting straight from the Hub (range requests) → ${output} (Q8_0) ...`);
    stats = await convert({
      input,
      output,
      type: "q8_0",
      hub: { endpoint: hub.endpoint, token: null },
      onEvent: progressRenderer("text", {
        write: (t) => Deno.stdout.writeSync(new TextEncoder().encode(`   ${t}`)),
        isTerminal: false,
      }),
    });
  }

  console.log("3. loading the GGUF in llama.cpp and decoding greedily ...");
  using llama = LlamaModel.load(output, { nCtx: 64 });
  const prompt = llama.tokenize(PROMPT, true);
  const ours = llama.greedy(prompt, NEW_TOKENS);
  const weights = await readModelWeights(modelDir);
  const reference = referenceGreedy(weights, referenceConfig(model.config), prompt, NEW_TOKENS);
  const show = (ids: number[]) => ids.map((id) => JSON.stringify(llama.tokenToPiece(id))).join(" ");
  console.log(`   prompt ${JSON.stringify(PROMPT)} → ids [${prompt.join(", ")}]`);
  console.log(`   llama.cpp (Q8_0 GGUF): ${show(ours)}`);
  console.log(`   float64 reference    : ${show(reference)}`);
  const same = ours.filter((id, i) => id === reference[i]).length;
  console.log(`   ${same}/${NEW_TOKENS} greedy tokens agree (random weights: the words are noise,`);
  console.log(`   the agreement is the point)`);
  console.log("4. stats");
  console.log(
    `   tensors ${stats.tensors}, read ${formatBytes(stats.bytesRead)}, wrote ` +
      `${formatBytes(stats.bytesWritten)} in ${stats.seconds.toFixed(2)} s ` +
      `(${stats.mbPerSecond.toFixed(1)} MB/s), peak RSS ${formatBytes(stats.peakRssBytes)}`,
  );
  console.log(
    "   (peak RSS of this process, which also generated the model and ran the Hub server)",
  );
  if (same < NEW_TOKENS / 2) {
    console.error("demo: llama.cpp and the reference disagree — something is wrong");
    Deno.exitCode = 1;
  }
} finally {
  await Deno.remove(work, { recursive: true });
}
