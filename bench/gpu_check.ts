/**
 * GPU check and speed (run on a machine with a real GPU): for every FP4 format and search mode,
 * with and without an imatrix, the WGSL kernel's bytes must equal the CPU twin's, from float32
 * rows and from BF16 bytes (`encodeBf16`); then the end-to-end throughput of BF16 input → NVFP4
 * `full` + imatrix (BF16 bytes uploaded as they are, or decoded on the CPU first; several chunks
 * in flight), against the CPU twin on the same data in the same run.
 *
 * deno run -A bench/gpu_check.ts [elements, default 256 Mi]
 * Imports nothing from npm, so it runs from a bare copy of the repository.
 *
 * @module
 */
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import type { Fp4FormatName } from "../gpu/fp4/formats.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import { decodeBf16, encodeBf16 } from "../stages/encode/float_codecs.ts";
import { heavyTailed } from "./_gpu_data.ts";

/** xorshift32, seeded: data must be the same on every machine. */
const N_PER_ROW = 4096;

async function checkBytes(): Promise<number> {
  const formats: Fp4FormatName[] = [
    "nvfp4",
    "mxfp4",
    "q4_0_rocmfp4",
    "q4_0_rocmfp4_fast",
    "amdfp4",
  ];
  const modes: Fp4SearchMode[] = ["rtn", "window", "full"];
  const rows = heavyTailed(N_PER_ROW * 256, 7);
  const imatrix = Float32Array.from(heavyTailed(N_PER_ROW, 9), (v) => v * v * 1e4 + 1e-3);
  const rowsBf16 = new Uint8Array(rows.length * 2);
  encodeBf16(rows, rowsBf16);
  const rowsFromBf16 = new Float32Array(rows.length);
  decodeBf16(rowsBf16, rowsFromBf16);
  let bad = 0;
  for (const format of formats) {
    for (const mode of modes) {
      for (const im of [null, imatrix]) {
        const options = { mode, imatrix: im, fourOverSix: mode === "window" };
        const gpu = await createFp4Encoder(format, N_PER_ROW, { ...options, device: "gpu" });
        const cpu = await createFp4Encoder(format, N_PER_ROW, { ...options, device: "cpu" });
        const [a, b, c] = await Promise.all([
          gpu.encode(rows),
          cpu.encode(rows),
          gpu.encodeBf16(rowsBf16),
        ]);
        const d = await cpu.encode(rowsFromBf16);
        let diff = 0;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
        let diffBf16 = 0;
        for (let i = 0; i < c.length; i++) if (c[i] !== d[i]) diffBf16++;
        if (diff > 0 || diffBf16 > 0) bad++;
        console.log(
          `${format.padEnd(18)} ${mode.padEnd(6)} imatrix ${im ? "yes" : "no "}: ` +
            (diff === 0 ? "GPU bytes == CPU twin" : `${diff} bytes differ`) + "; BF16 in: " +
            (diffBf16 === 0 ? "GPU bytes == CPU twin" : `${diffBf16} bytes differ`),
        );
      }
    }
  }
  return bad;
}

/**
 * BF16 bytes → NVFP4 full + imatrix, `chunkElements` per call and `depth` calls in flight; the
 * rows go in as BF16 bytes (`encodeBf16`, widened on the GPU) or decoded to float32 on the CPU
 * first (`encode`).
 */
async function throughput(
  device: "gpu" | "cpu",
  bf16: Uint8Array,
  chunkElements: number,
  depth: number,
  viaBf16: boolean,
) {
  const imatrix = Float32Array.from(heavyTailed(N_PER_ROW, 11), (v) => v * v * 1e4 + 1e-3);
  const enc = await createFp4Encoder("nvfp4", N_PER_ROW, { mode: "full", imatrix, device });
  const elements = bf16.length / 2;
  const inFlight: Promise<Uint8Array>[] = [];
  const t0 = performance.now();
  for (let at = 0; at < elements; at += chunkElements) {
    const n = Math.min(chunkElements, elements - at);
    const bytes = bf16.subarray(at * 2, (at + n) * 2);
    if (viaBf16) {
      inFlight.push(enc.encodeBf16(bytes));
    } else {
      const values = new Float32Array(n);
      decodeBf16(bytes, values);
      inFlight.push(enc.encode(values));
    }
    if (inFlight.length >= depth) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, gbs: bf16.length / 1e9 / seconds, melems: elements / 1e6 / seconds };
}

const gpu = await acquireGpu("auto");
console.log(
  gpu ? `adapter: ${gpu.description} (fallback: ${gpu.isFallback})` : "no WebGPU adapter",
);
if (gpu) {
  const bad = await checkBytes();
  console.log(bad === 0 ? "all GPU outputs equal the CPU twin" : `${bad} cases differ`);
  const totalElements = Number(Deno.args[0] ?? 256 * 2 ** 20);
  const values = heavyTailed(totalElements, 13);
  const bf16 = new Uint8Array(totalElements * 2);
  encodeBf16(values, bf16);
  const cpuSlice = bf16.subarray(0, Math.min(bf16.length, 2 * 8 * 2 ** 20));
  const c = await throughput("cpu", cpuSlice, 2 * 2 ** 20, 3, false);
  const Mi = 2 ** 20;
  const runs: [string, number, number, boolean][] = [
    ["encodeBf16, 16 Mi-element chunks, 3 in flight", 16 * Mi, 3, true],
    ["encodeBf16, 16 Mi-element chunks, 8 in flight", 16 * Mi, 8, true],
    ["encodeBf16, 4 Mi-element chunks, 3 in flight", 4 * Mi, 3, true],
    ["encodeBf16, 4 Mi-element chunks, 8 in flight", 4 * Mi, 8, true],
    ["BF16 decoded on the CPU + encode, 16 Mi-element chunks, 3 in flight", 16 * Mi, 3, false],
  ];
  for (const [label, chunk, depth, viaBf16] of runs) {
    const g = await throughput("gpu", bf16, chunk, depth, viaBf16);
    console.log(
      `NVFP4 full + imatrix, BF16 in (${label}): GPU ${g.gbs.toFixed(2)} GB/s ` +
        `(${g.melems.toFixed(0)} Melem/s, ${(bf16.length / 1e9).toFixed(2)} GB in ` +
        `${g.seconds.toFixed(2)} s); CPU twin ${c.gbs.toFixed(3)} GB/s (${c.melems.toFixed(1)} ` +
        `Melem/s); ratio ${(g.gbs / c.gbs).toFixed(0)}×`,
    );
  }
}
