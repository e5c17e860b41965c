/**
 * The whole converter on a GPU machine: generates a BF16 llama (default ~1 GB), writes an imatrix
 * for every block weight, and times `convert()` to NVFP4 with the `full` scale search on the GPU,
 * with and without the outer-scale pre-pass, reporting GB/s of BF16 input; the same conversion
 * with `--device cpu` on a slice of the work is the anchor in the same run. Needs only the runtime
 * npm packages (tokenizer, Hub client), not llama.cpp.
 *
 * @module
 */
import { convert } from "../pipeline/convert.ts";
import { encodeImatrixGguf, type ImatrixStats } from "../testing/imatrix_files.ts";
import { generateModel } from "../testing/synthetic_model.ts";

const layers = Number(Deno.args[0] ?? 10);
const work = await Deno.makeTempDir({ prefix: "sluice-gpu-convert-" });
const dir = `${work}/model`;
const hidden = 2048, ff = 5632;
let t0 = performance.now();
await generateModel(dir, {
  arch: "llama",
  seed: 5,
  hiddenSize: hidden,
  intermediateSize: ff,
  numLayers: layers,
  numHeads: 16,
  numKvHeads: 8,
  dtype: "BF16",
  maxShardBytes: 512 << 20,
});
console.log(`generated ${layers} layers in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

// Positive per-column importances for every block weight (as llama-imatrix would collect).
const entries: ImatrixStats[] = [];
for (let l = 0; l < layers; l++) {
  for (
    const [name, cols] of [
      ["attn_q", hidden],
      ["attn_k", hidden],
      ["attn_v", hidden],
      ["attn_output", hidden],
      ["ffn_gate", hidden],
      ["ffn_up", hidden],
      ["ffn_down", ff],
    ] as const
  ) {
    const sums = Float32Array.from({ length: cols }, (_, i) => 100 * (1 + Math.sin(i * 0.37 + l)));
    entries.push({ name: `blk.${l}.${name}.weight`, sums, counts: [100] });
  }
}
await Deno.writeFile(
  `${work}/imatrix.gguf`,
  encodeImatrixGguf({ entries, datasets: ["synthetic"], chunkCount: 1, chunkSize: 100 }),
);

for (
  const [label, device, outerScale] of [
    ["GPU, outer scale (default: two reads)", "gpu", true],
    ["GPU, --no-outer-scale (one read)", "gpu", false],
  ] as const
) {
  t0 = performance.now();
  const stats = await convert({
    input: dir,
    output: `${work}/out.gguf`,
    type: "nvfp4",
    tokenizerPre: "llama-bpe",
    imatrix: `${work}/imatrix.gguf`,
    outerScale,
    encode: { mode: "full", device },
  });
  const s = (performance.now() - t0) / 1000;
  console.log(
    `${label}: ${(stats.bytesRead / 1e9).toFixed(2)} GB BF16 in ${s.toFixed(2)} s = ` +
      `${(stats.bytesRead / 1e9 / s).toFixed(2)} GB/s, peak RSS ${
        (stats.peakRssBytes / 2 ** 20).toFixed(0)
      } MiB`,
  );
  await Deno.remove(`${work}/out.gguf`);
}
await Deno.remove(work, { recursive: true });
