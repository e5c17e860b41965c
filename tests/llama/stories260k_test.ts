/**
 * stories260K, a really trained llama (when ../shared/models is present): llama.cpp's perplexity
 * of our F32 and BF16 files reproduces the float64 reference values in its README, and greedy
 * decoding tells the story from llama2.c's docs.
 */
import { assert, assertEquals } from "../_assert.ts";
import { convert } from "../../mod.ts";
import { LlamaModel } from "../../testing/llama_cpp.ts";
import { perplexity } from "../../testing/perplexity.ts";

const MODEL = new URL("../../../shared/models/stories260K/", import.meta.url).pathname;
const present = await Deno.stat(`${MODEL}config.json`).then(() => true, () => false);
if (!present) console.warn(`skipping stories260K tests: ${MODEL} is not present`);

/** Reference perplexities from the model's README (numpy, float64, n_ctx 256). */
const REFERENCE = { f32: 6.0481, bf16: 6.0491 } as const;
/** float32 math in llama.cpp vs float64 in the reference. */
const TOLERANCE = 0.003;

for (const type of ["f32", "bf16"] as const) {
  Deno.test({
    name: `stories260K ${type}: llama.cpp perplexity reproduces ${REFERENCE[type]}`,
    ignore: !present,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        const out = `${dir}/stories260K-${type}.gguf`;
        await convert({ input: MODEL, output: out, type });
        using model = LlamaModel.load(out, { nCtx: 256 });
        const text = await Deno.readTextFile(`${MODEL}eval/tinystories-train-head.txt`);
        const r = perplexity(model, text, 256, 1);
        assertEquals(r.chunks, 393);
        assertEquals(r.scoredTokens, 49911);
        assert(
          Math.abs(r.ppl - REFERENCE[type]) < TOLERANCE,
          `ppl ${r.ppl.toFixed(4)} vs reference ${REFERENCE[type]} (±${TOLERANCE})`,
        );
        if (type === "f32") {
          const story = model.greedy([1], 24).map((t) => model.tokenToPiece(t)).join("");
          assert(story.startsWith(" Once upon a time, there was a little girl named Lily."), story);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
