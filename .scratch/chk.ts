import { plan } from "../pipeline/convert.ts";
const { plan: p } = await plan(".bench/core/model", { type: "q8_0", tokenizerPre: "llama-bpe" });
console.log(p.tensors.slice(0, 3).map((t) => [t.name, t.fp4]));
