/**
 * FP4 through the whole converter, checked by real llama.cpp: NVFP4 and MXFP4 GGUFs of
 * stories260K load and keep a sane perplexity; on a generated model, llama.cpp's logits of the
 * real NVFP4/MXFP4 file match those of the same weights quantized and dequantized by Sluice
 * (`--simulate`, an F32 carrier that stock llama.cpp reads), which proves the block bytes decode
 * to what the encoder meant; and every FP4 format, simulated, stays close to the F32 model.
 */
import { assert } from "../_assert.ts";
import { convert, type ConvertOptions } from "../../mod.ts";
import { LlamaModel } from "../../testing/llama_cpp.ts";
import { perplexity } from "../../testing/perplexity.ts";
import { generateModel, readModelWeights } from "../../testing/synthetic_model.ts";
import { collectImatrix } from "../../testing/imatrix_collect.ts";
import { encodeImatrixGguf } from "../../testing/imatrix_files.ts";
import { referenceConfig } from "../../testing/reference_forward.ts";
import { gguf } from "@huggingface/gguf";

const STORIES = new URL("../../../shared/models/stories260K/", import.meta.url).pathname;
const haveStories = await Deno.stat(`${STORIES}config.json`).then(() => true, () => false);
if (!haveStories) console.warn(`skipping stories260K FP4 tests: ${STORIES} is not present`);

const MXFP4_WEIGHTS = { tensorTypes: [[/^blk\..*\.weight$/, "mxfp4"] as const] };

/** FP4 may cost some perplexity, not a broken model: within 25% of F32 on the same text. */
for (
  const [name, extra] of [
    ["NVFP4", { type: "nvfp4" }],
    ["MXFP4", { type: "q8_0", rules: MXFP4_WEIGHTS }],
  ] as const
) {
  Deno.test({
    name: `stories260K ${name} GGUF loads in llama.cpp with a sane perplexity`,
    ignore: !haveStories,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        const text = (await Deno.readTextFile(`${STORIES}eval/tinystories-train-head.txt`))
          .slice(0, 40_000);
        const ppl = async (options: Partial<ConvertOptions>) => {
          const out = `${dir}/s.gguf`;
          await convert({ input: STORIES, output: out, ...options } as ConvertOptions);
          using model = LlamaModel.load(out, { nCtx: 256 });
          const story = model.greedy([1], 12).map((t) => model.tokenToPiece(t)).join("");
          return { ppl: perplexity(model, text, 256, 1).ppl, story };
        };
        const f32 = await ppl({ type: "f32" });
        // On the CPU: a test file that opens the GPU must run as a worker suite (tests/gpu/), and
        // the GPU gives these bytes too (tests/gpu/fp4_outer_gpu.ts compares whole conversions).
        const fp4 = await ppl({ encode: { mode: "window", device: "cpu" }, ...extra });
        const ratio = fp4.ppl / f32.ppl;
        assert(
          ratio > 1 && ratio < 1.25,
          `${name} ppl ${fp4.ppl.toFixed(3)} vs F32 ${f32.ppl.toFixed(3)}`,
        );
        assert(/Once upon a time/.test(fp4.story), fp4.story);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** KL divergence of softmax(q) from softmax(p), averaged over positions. */
function meanKld(p: Float32Array[], q: Float32Array[]): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    const lp = logSoftmax(p[i]!), lq = logSoftmax(q[i]!);
    let kl = 0;
    for (let v = 0; v < lp.length; v++) kl += Math.exp(lp[v]!) * (lp[v]! - lq[v]!);
    total += kl;
  }
  return total / p.length;
}

function logSoftmax(x: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  let sum = 0;
  for (const v of x) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(x, (v) => v - lse);
}

Deno.test("real NVFP4/MXFP4 files give llama.cpp the logits of Sluice's own dequantized weights", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = `${work}/m`;
    await generateModel(dir, {
      arch: "llama",
      seed: 21,
      hiddenSize: 128,
      intermediateSize: 256,
      dtype: "BF16",
      distribution: "student-t",
    });
    const base = {
      input: dir,
      tokenizerPre: "llama-bpe",
      encode: { mode: "window" as const, device: "cpu" as const },
    };
    const tokens = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 500);
    const logits = (path: string) => {
      using m = LlamaModel.load(path, { nCtx: 64, exact: true });
      return m.logits(tokens);
    };
    await convert({ ...base, output: `${work}/f32.gguf`, type: "f32" });
    const f32 = await logits(`${work}/f32.gguf`);
    for (
      const [format, real, outerScale] of [
        ["nvfp4", { type: "nvfp4" }, false],
        ["nvfp4", { type: "nvfp4" }, true], // `.scale` side tensors that llama.cpp multiplies in
        ["mxfp4", { type: "q8_0", rules: MXFP4_WEIGHTS }, false],
      ] as const
    ) {
      // The simulated file holds the dequantized values of the tensors the real file encodes
      // (token_embd and output stay F32 there, Q8_0 in the real file).
      await convert(
        { ...base, output: `${work}/${format}.gguf`, outerScale, ...real } as ConvertOptions,
      );
      await convert({
        ...base,
        output: `${work}/${format}-sim.gguf`,
        type: "f32",
        simulate: format,
        outerScale,
      });
      const realLogits = await logits(`${work}/${format}.gguf`);
      const simLogits = await logits(`${work}/${format}-sim.gguf`);
      const realVsSim = meanKld(simLogits, realLogits);
      const simVsF32 = meanKld(f32, simLogits);
      // Real vs simulated differ only by llama.cpp's activation rounding and the Q8_0 embeddings;
      // a wrong nibble order or scale would put them as far apart as FP4 from F32, or further.
      assert(
        realVsSim < simVsF32 / 3,
        `${format}${outerScale ? " + outer scale" : ""}: KLD real↔sim ${
          realVsSim.toExponential(2)
        } vs sim↔f32 ${simVsF32.toExponential(2)}`,
      );
      assert(simVsF32 > 0 && simVsF32 < 0.5, `${format}: KLD vs F32 ${simVsF32}`);
    }
    for (const format of ["q4_0_rocmfp4", "q4_0_rocmfp4_fast", "amdfp4"] as const) {
      await convert({
        ...base,
        output: `${work}/${format}-sim.gguf`,
        type: "f32",
        simulate: format,
      });
      const kld = meanKld(f32, await logits(`${work}/${format}-sim.gguf`));
      assert(kld > 0 && kld < 0.5, `${format} simulated: KLD vs F32 ${kld}`);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("sluice convert --imatrix weights the FP4 search and records quantize.imatrix.*", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = `${work}/m`;
    const model = await generateModel(dir, {
      arch: "llama",
      seed: 23,
      hiddenSize: 128,
      intermediateSize: 256,
    });
    const weights = await readModelWeights(dir);
    const tokens = Array.from({ length: 128 }, (_, i) => (i * 97 + 3) % model.vocabSize);
    const data = collectImatrix(weights, referenceConfig(model.config), tokens, { chunkSize: 32 });
    await Deno.writeFile(`${work}/imatrix.gguf`, encodeImatrixGguf(data));
    const run = async (extra: string[]) => {
      const out = `${work}/out-${extra.length}.gguf`;
      const cmd = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../../cli.ts", import.meta.url).pathname,
          "convert",
          dir,
          "-o",
          out,
          "--type",
          "nvfp4",
          "--tokenizer-pre",
          "llama-bpe",
          "--scale-search",
          "window",
          "--device",
          "cpu",
          "--log-format",
          "json",
          ...extra,
        ],
        stderr: "piped",
      }).output();
      assert(cmd.success, new TextDecoder().decode(cmd.stderr));
      return out;
    };
    const plain = await run([]);
    const weighted = await run(["--imatrix", `${work}/imatrix.gguf`]);
    const metadata = (await gguf(weighted, { allowLocalFile: true })).metadata as Record<
      string,
      unknown
    >;
    assert(metadata["quantize.imatrix.file"] === `${work}/imatrix.gguf`);
    assert(Number(metadata["quantize.imatrix.entries_count"]) === 14); // 7 matrices × 2 layers
    const a = await Deno.readFile(plain), b = await Deno.readFile(weighted);
    let differ = 0;
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) differ++;
    assert(differ > 1000, `the imatrix changed ${differ} bytes`);
    using m = LlamaModel.load(weighted, { nCtx: 64 });
    assert(m.logits(tokens.slice(0, 16)).every((row) => row.every(Number.isFinite)));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
