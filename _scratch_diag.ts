import { convert } from "./mod.ts";
import { LlamaModel } from "./testing/_scratch_llama_cpp.ts";
import { referenceConfig, referenceLogits } from "./testing/reference_forward.ts";
import { readModelWeights, type DecodedTensor } from "./testing/safetensors_reader.ts";
import { generateModel } from "./testing/synthetic_model.ts";
import { SeededRandom } from "./testing/seeded_random.ts";
import { f32ToBf16Bits, bf16BitsToF32 } from "./testing/half_floats.ts";
const dir = "/tmp/sluice_tb/diag";
const m = await generateModel(dir, { arch: "llama", seed: 101, numHeads: 4, numKvHeads: 2 });
const w = await readModelWeights(dir);
const cfg = referenceConfig(m.config);
const r = new SeededRandom(101, "tokens");
const tokens = [m.bosId, ...Array.from({ length: 23 }, () => r.uint32() % 510)];
const ref = referenceLogits(w, cfg, tokens);
function q8(x: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0; for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b+i]!));
    const d = Math.fround(Math.f16round(amax / 127));
    for (let i = 0; i < 32; i++) out[b+i] = d === 0 ? 0 : Math.round(x[b+i]! / (amax/127)) * d;
  }
  return out;
}
function sim(kind: string) {
  const out = new Map<string, DecodedTensor>();
  for (const [k, t] of w) {
    if (t.shape.length !== 2) { out.set(k, t); continue; }
    const data = kind === "bf16" ? bf16BitsToF32(f32ToBf16Bits(t.data)) : kind === "f16" ? Float32Array.from(t.data, Math.f16round) : q8(t.data, t.shape[1]!);
    out.set(k, { ...t, data });
  }
  return out;
}
function err(a: ArrayLike<number>[], b: Float64Array[]) {
  let e = 0; const per: number[] = [];
  b.forEach((row, t) => { let pe = 0; row.forEach((v, i) => { pe = Math.max(pe, Math.abs(a[t]![i]! - v) / (1 + Math.abs(v))); }); per.push(+pe.toFixed(3)); e = Math.max(e, pe); });
  return { e, per };
}
let maxAbs = 0, ss = 0, n = 0; for (const row of ref) for (const v of row) { maxAbs = Math.max(maxAbs, Math.abs(v)); ss += v*v; n++; }
console.log("ref logits max", maxAbs, "rms", Math.sqrt(ss/n));
for (const kind of ["f16", "bf16", "q8_0"]) {
  const s = referenceLogits(sim(kind), cfg, tokens);
  console.log("weights-only", kind, err(s, ref).e);
  const out = `/tmp/sluice_tb/diag-${kind}.gguf`;
  await convert({ input: dir, output: out, type: kind as "f16", tokenizerPre: "llama-bpe" });
  using lm = LlamaModel.load(out, { nCtx: 64 });
  const ll = lm.logits(tokens);
  const c = err(ll, ref); const c2 = err(ll, s);
  console.log("llama", kind, "vs ref", c.e, "vs weight-sim ref", c2.e, c.per.join(" "));
}
