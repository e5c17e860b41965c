import { plan } from "../pipeline/convert.ts";
import { fillOuterScales } from "../stages/amax_prepass.ts";
import { peakRssBytes } from "../pipeline/memory.ts";
const { source, plan: p } = await plan(".bench/core/model", { type: "nvfp4", tokenizerPre: "llama-bpe" });
const t0 = performance.now();
await fillOuterScales(source, p.tensors, Deno.args[0] ? { chunkSize: Number(Deno.args[0]) } : {});
console.log(`pre-pass ${((performance.now() - t0) / 1000).toFixed(2)} s, peak RSS ${(peakRssBytes() / 2 ** 20).toFixed(0)} MiB`);
