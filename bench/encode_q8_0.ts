/**
 * Q8_0 encoder throughput against ggml's single-threaded `quantize_q8_0` (through
 * `ggml_quantize_chunk`, one synchronous FFI call on the calling thread) on the same ~64 MB of
 * float32: Gaussian rows of 4096 with per-row scales, rounded to bfloat16 as a checkpoint holds
 * them. Sluice's figure includes decoding the BF16 source (`encodeQ8_0FromBytes`); the split path
 * (`decodeBf16` into a full float32 buffer, then `encodeQ8_0`) and the decoder alone are printed
 * too. Throughput is float32-equivalent bytes (4 per element) per second, best of `reps` runs,
 * interleaved so that both sides see the same machine load.
 *
 * Run: `deno run -A bench/encode_q8_0.ts`
 *
 * @module
 */
import { decodeBf16 } from "../stages/encode/float_codecs.ts";
import { encodeQ8_0, encodeQ8_0FromBytes, q8_0Bytes } from "../stages/encode/q8_0.ts";
import { ggmlQuantizeInto } from "../testing/ggml.ts";
import { bf16BitsToF32, f32ToBf16Bits } from "../testing/half_floats.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

/** Throughput figures in MB/s of float32-equivalent data (1 MB = 10^6 bytes). */
export interface Q8_0Bench {
  /** Sluice, BF16 bytes → Q8_0 in one pass (`encodeQ8_0FromBytes`). */
  sluiceMBs: number;
  /** ggml `quantize_q8_0`, float32 → Q8_0, single thread. */
  ggmlMBs: number;
  /** sluiceMBs / ggmlMBs; the project target is at least 0.5. */
  ratio: number;
  /** Sluice, `decodeBf16` to a full float32 buffer then `encodeQ8_0`. */
  splitPathMBs: number;
  /** Sluice `encodeQ8_0` alone on float32. */
  encodeOnlyMBs: number;
  /** `decodeBf16` alone, float32 output. */
  bf16DecodeMBs: number;
}

/** Options for {@link benchQ8_0}. */
export interface Q8_0BenchOptions {
  /** Elements (a multiple of 4096). @default 16 Mi (64 MB of float32) */
  elements?: number;
  /** Timed runs per variant; the best counts. @default 5 */
  reps?: number;
}

const ROW = 4096;

/** Measures Sluice's Q8_0 encoding against ggml's on the same data. */
export function benchQ8_0(options: Q8_0BenchOptions = {}): Q8_0Bench {
  const n = options.elements ?? 16 * 1024 * 1024;
  const reps = options.reps ?? 5;
  if (n <= 0 || n % ROW !== 0) {
    throw new RangeError(`Cannot bench Q8_0 as ${n} elements are not whole rows of ${ROW}`);
  }
  const r = new SeededRandom(2026, "bench q8_0");
  const raw = new Float32Array(n);
  for (let row = 0; row < n / ROW; row++) {
    const scale = 0.02 * Math.exp(0.5 * r.normal());
    for (let i = 0; i < ROW; i++) raw[row * ROW + i] = r.normal() * scale;
  }
  const bf16 = f32ToBf16Bits(raw);
  const bf16Bytes = new Uint8Array(bf16.buffer);
  const f32 = bf16BitsToF32(bf16);
  const ours = new Uint8Array(q8_0Bytes(n));
  const theirs = new Uint8Array(q8_0Bytes(n));
  const scratch = new Float32Array(n);

  const variants = {
    sluice: () => encodeQ8_0FromBytes("BF16", bf16Bytes, ours),
    ggml: () => ggmlQuantizeInto("q8_0", f32, theirs, ROW),
    split: () => {
      decodeBf16(bf16Bytes, scratch);
      encodeQ8_0(scratch, ours);
    },
    encode: () => encodeQ8_0(f32, ours),
    decode: () => decodeBf16(bf16Bytes, scratch),
  };
  const best: Record<keyof typeof variants, number> = {
    sluice: Infinity,
    ggml: Infinity,
    split: Infinity,
    encode: Infinity,
    decode: Infinity,
  };
  for (let rep = 0; rep < reps; rep++) {
    for (const key of Object.keys(variants) as (keyof typeof variants)[]) {
      const t0 = performance.now();
      variants[key]();
      best[key] = Math.min(best[key], performance.now() - t0);
    }
  }
  encodeQ8_0FromBytes("BF16", bf16Bytes, ours);
  for (let i = 0; i < ours.length; i++) {
    if (ours[i] !== theirs[i]) {
      throw new Error(`Cannot trust the Q8_0 bench as output byte ${i} differs from ggml`);
    }
  }
  const mbs = (ms: number) => (n * 4) / (ms * 1000);
  const sluiceMBs = mbs(best.sluice);
  const ggmlMBs = mbs(best.ggml);
  return {
    sluiceMBs,
    ggmlMBs,
    ratio: sluiceMBs / ggmlMBs,
    splitPathMBs: mbs(best.split),
    encodeOnlyMBs: mbs(best.encode),
    bf16DecodeMBs: mbs(best.decode),
  };
}

/** Runs {@linkcode benchQ8_0} and prints its table. */
export function reportQ8_0(): void {
  const b = benchQ8_0();
  const f = (v: number) => v.toFixed(0).padStart(6);
  console.log(`Q8_0 on 64 MB of float32 (BF16 source), MB/s of float32, best of 5:`);
  console.log(`  ggml quantize_q8_0, 1 thread      ${f(b.ggmlMBs)}`);
  console.log(`  sluice BF16 bytes -> Q8_0 (fused) ${f(b.sluiceMBs)}  ratio ${b.ratio.toFixed(2)}`);
  console.log(`  sluice decodeBf16 + encodeQ8_0    ${f(b.splitPathMBs)}`);
  console.log(`  sluice encodeQ8_0 (float32 only)  ${f(b.encodeOnlyMBs)}`);
  console.log(`  sluice decodeBf16 alone           ${f(b.bf16DecodeMBs)}`);
}

if (import.meta.main) reportQ8_0();
