/**
 * FP4 encoder throughput in Melem/s for every format and search mode: the CPU twin, the WebGPU
 * kernel (when there is an adapter) and, for NVFP4 and MXFP4 `rtn`, ggml's single-threaded
 * `quantize_nvfp4` / `quantize_mxfp4` on the same data in the same run (ggml has no imatrix
 * search and no ROCmFP4 or AMD-FP4 types). Also prints the weighted squared error of each mode
 * relative to rtn, so speed can be weighed against what the search buys.
 *
 * Data: Gaussian and Student-t rows of 4096 with per-row log-normal scales and an imatrix of
 * log-normal column weights. Each figure is the best of `reps` runs; the GPU figure includes the
 * upload and the read-back, with the whole input as one call (after a warm-up call that compiles
 * the pipeline). Every GPU result is checked against the twin's bytes.
 *
 * Run: `deno run -A bench/encode_fp4.ts [elements]`
 *
 * @module
 */
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { decodeFp4 } from "../gpu/fp4/decode.ts";
import { FP4_FORMATS, type Fp4Format } from "../gpu/fp4/formats.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import { ggmlQuantizeInto } from "../testing/ggml.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

/** One line of results. */
export interface Fp4BenchRow {
  readonly format: string;
  readonly mode: Fp4SearchMode;
  /** CPU twin, Melem/s. */
  readonly cpu: number;
  /** WebGPU kernel, Melem/s, or null without an adapter. */
  readonly gpu: number | null;
  /** ggml's quantizer, Melem/s, where it has one for this format and mode. */
  readonly ggml: number | null;
  /** Imatrix-weighted squared error relative to rtn's (1 for rtn). */
  readonly relativeError: number;
}

/** Options for {@linkcode benchFp4}. */
export interface Fp4BenchOptions {
  /** Elements (a multiple of 4096). @default 1 Mi */
  elements?: number;
  /** Timed runs per variant; the best counts. @default 2 */
  reps?: number;
  /** Where lines go. @default console.log */
  write?: (line: string) => void;
}

const ROW = 4096;

function rows(n: number): { x: Float32Array; imatrix: Float32Array } {
  const r = new SeededRandom(2026, "bench fp4");
  const x = new Float32Array(n);
  for (let row = 0; row < n / ROW; row++) {
    const scale = 0.02 * Math.exp(0.5 * r.normal());
    for (let i = 0; i < ROW; i++) {
      x[row * ROW + i] = (row % 2 ? r.studentT(5) : r.normal()) * scale;
    }
  }
  const imatrix = Float32Array.from({ length: ROW }, () => Math.exp(2 * r.normal()));
  return { x, imatrix };
}

function best(reps: number, run: () => void): number {
  let ms = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    ms = Math.min(ms, performance.now() - t0);
  }
  return ms;
}

async function bestAsync(reps: number, run: () => Promise<unknown>): Promise<number> {
  let ms = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    ms = Math.min(ms, performance.now() - t0);
  }
  return ms;
}

function weightedError(format: Fp4Format, x: Float32Array, bytes: Uint8Array, w: Float32Array) {
  const y = decodeFp4(format, bytes, x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += w[i % ROW]! * (x[i]! - y[i]!) ** 2;
  return sum;
}

/** Measures every format and mode and writes a table; returns the rows. */
export async function benchFp4(options: Fp4BenchOptions = {}): Promise<Fp4BenchRow[]> {
  const n = options.elements ?? 1 << 20;
  const reps = options.reps ?? 2;
  const write = options.write ?? console.log;
  if (n <= 0 || n % ROW !== 0) {
    throw new RangeError(`Cannot bench FP4 as ${n} elements are not whole rows of ${ROW}`);
  }
  const { x, imatrix } = rows(n);
  const gpu = await acquireGpu("auto");
  write(
    `FP4 encoders on ${n} elements (${ROW}-wide rows, imatrix on), best of ${reps}; ` +
      `GPU: ${gpu === null ? "none" : gpu.description}`,
  );
  write("format              mode     CPU Melem/s  GPU Melem/s  ggml Melem/s  error vs rtn");
  const out: Fp4BenchRow[] = [];
  const melem = (ms: number) => n / ms / 1000;
  for (const format of Object.values(FP4_FORMATS)) {
    let rtnError = 0;
    for (const mode of ["rtn", "window", "full"] as const) {
      const opts = { mode, imatrix };
      let bytes: Uint8Array = new Uint8Array(0);
      const cpuMs = best(reps, () => {
        bytes = encodeFp4RowsCpu(format, x, ROW, opts);
      });
      let gpuMs: number | null = null;
      if (gpu !== null) {
        const encoder = await createFp4Encoder(format, ROW, { ...opts, device: "gpu" });
        const first = await encoder.encode(x);
        for (let i = 0; i < bytes.length; i++) {
          if (first[i] !== bytes[i]) {
            throw new Error(
              `Cannot trust the FP4 bench as GPU byte ${i} differs from the CPU twin`,
            );
          }
        }
        gpuMs = await bestAsync(reps, () => encoder.encode(x));
      }
      let ggmlMs: number | null = null;
      if (mode === "rtn" && format.ggmlType !== null && format.rtnRule.startsWith("ggml")) {
        const dst = new Uint8Array(bytes.length);
        ggmlMs = best(reps, () => ggmlQuantizeInto(format.ggmlType!.id, x, dst, ROW, imatrix));
      }
      const error = weightedError(format, x, bytes, imatrix);
      if (mode === "rtn") rtnError = error;
      const row: Fp4BenchRow = {
        format: format.label,
        mode,
        cpu: melem(cpuMs),
        gpu: gpuMs === null ? null : melem(gpuMs),
        ggml: ggmlMs === null ? null : melem(ggmlMs),
        relativeError: error / rtnError,
      };
      out.push(row);
      const num = (v: number | null) => (v === null ? "-" : v.toFixed(2)).padStart(11);
      write(
        `${row.format.padEnd(19)} ${mode.padEnd(6)} ${num(row.cpu)}  ${num(row.gpu)}  ` +
          `${num(row.ggml)}   ${row.relativeError.toFixed(4).padStart(11)}`,
      );
    }
  }
  return out;
}

if (import.meta.main) {
  const elements = Deno.args[0] === undefined ? undefined : Number(Deno.args[0]);
  await benchFp4(elements === undefined ? {} : { elements });
}
